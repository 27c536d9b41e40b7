"""``enfugue-serve batch``: run a JSONL file of invoke payloads through a running app.

Each line is POSTed to /api/invoke, followed to its end (server-sent events, polling when they
fail), and its images saved as ``<line>_<index>.png``; one JSON line per input line goes to
``results.jsonl``. A rerun skips the lines recorded there as completed. The output folder is a
path or an fsspec URL (as the app's ``storage_url``): a batch run as a Ray job on some node writes
where its submitter reads.
"""

from __future__ import annotations

import json
import logging
import posixpath
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import IO, Any, TextIO

import httpx
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

logger = logging.getLogger(__name__)

RESULTS = "results.jsonl"
FINAL = frozenset({"completed", "error", "cancelled"})
# The event stream sends a comment every 15 s while nothing changes: a read waits longer than that.
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# Ray Serve answers 503 while its replicas' queues are full: as passing as a dropped connection.
TRANSIENT = frozenset({502, 503, 504})
# An object store cannot append: its results.jsonl is written whole, at most this often and at the end.
FLUSH_S = 10.0


class LineError(Exception):
    """A line that cannot complete; its message goes to the results file."""


def make_client(url: str, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT)


def login(client: httpx.Client, username: str, password: str) -> str:
    """An access token for ``username`` (POST /api/login)."""
    response = _request(client, "POST", "/api/login", json={"username": username, "password": password})
    return response.json()["data"]["attributes"]["access_token"]


class Output:
    """The folder a batch writes to: a path, or an fsspec URL (``s3://bucket/results``)."""

    def __init__(self, location: str | Path) -> None:
        self.fs, self.root = url_to_fs(str(location))
        self.fs.makedirs(self.root, exist_ok=True)
        self.local = isinstance(self.fs, LocalFileSystem)

    def __str__(self) -> str:
        return self.root if self.local else self.fs.unstrip_protocol(self.root)

    def path(self, name: str) -> str:
        return posixpath.join(self.root, name)

    def read_text(self, name: str) -> str:
        """The file's text; "" when there is none."""
        return self.fs.cat_file(self.path(name)).decode() if self.fs.exists(self.path(name)) else ""

    def write(self, name: str, data: bytes) -> None:
        self.fs.pipe_file(self.path(name), data)


class _Results:
    """``results.jsonl``: a line appended per record on a local disk; elsewhere the whole file,
    written at most every FLUSH_S and when the batch ends (a kill loses at most those records:
    their lines run again)."""

    def __init__(self, output: Output) -> None:
        self._output, self._text = output, output.read_text(RESULTS)
        # A record cut short by a kill: the next starts a line of its own.
        cut = "\n" if self._text and not self._text.endswith("\n") else ""
        self._text += cut
        self._file: IO[str] | None = open(output.path(RESULTS), "a") if output.local else None  # noqa: SIM115
        self._written = time.monotonic()
        self._add(cut)

    def add(self, result: dict[str, Any]) -> None:
        self._add(json.dumps(result) + "\n")

    def _add(self, text: str) -> None:
        if self._file is not None:
            self._file.write(text)
            self._file.flush()
            return
        self._text += text
        if time.monotonic() - self._written >= FLUSH_S:
            self._flush()

    def _flush(self) -> None:
        self._output.write(RESULTS, self._text.encode())
        self._written = time.monotonic()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        else:
            self._flush()


def run_batch(
    lines_path: Path,
    out: str | Path,
    client: httpx.Client,
    concurrency: int = 2,
    progress: TextIO | None = sys.stderr,
    poll_s: float = 1.0,
) -> int:
    """Run every line not yet completed, ``concurrency`` at a time; 0 when all lines completed, else 1."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    lines = [(number, text) for number, text in enumerate(lines_path.read_text().splitlines(), 1) if text.strip()]
    output = Output(out)
    done = _completed(output.read_text(RESULTS))
    pending = [(number, text) for number, text in lines if number not in done]
    bar = _Progress(len(lines), len(lines) - len(pending), progress)
    failed = 0
    pool = ThreadPoolExecutor(max_workers=concurrency)
    record = _Results(output)
    try:
        futures = [pool.submit(_run_line, client, number, text, output, poll_s) for number, text in pending]
        for future in as_completed(futures):
            result = future.result()
            record.add(result)
            failed += result["status"] != "completed"
            bar.advance(result["status"] == "completed")
    finally:  # on Ctrl+C, start no further lines (the ones under way finish, unrecorded)
        pool.shutdown(wait=False, cancel_futures=True)
        record.close()
    bar.close()
    summary = (
        f"batch: {len(lines)} lines, {len(lines) - failed} completed ({len(lines) - len(pending)} before this run), "
        f"{failed} not completed; results in {output.path(RESULTS) if output.local else output}/{RESULTS}"
    )
    if progress is not None:
        progress.write(summary + "\n")
    return 1 if failed else 0


def _completed(results: str) -> set[int]:
    """Lines whose latest record in ``results`` (the text of results.jsonl) says completed."""
    latest: dict[int, str] = {}
    for text in results.splitlines():
        try:
            entry = json.loads(text)
            latest[int(entry["line"])] = entry["status"]
        except (ValueError, KeyError, TypeError):  # a record cut short by a kill: run its line again
            continue
    return {line for line, status in latest.items() if status == "completed"}


def _run_line(client: httpx.Client, number: int, text: str, output: Output, poll_s: float) -> dict[str, Any]:
    result: dict[str, Any] = {"line": number, "uuid": None, "status": "error", "images": []}
    try:
        try:
            payload = json.loads(text)
        except ValueError as error:
            raise LineError(f"not valid JSON: {error}") from None
        if not isinstance(payload, dict):
            raise LineError(f"not a JSON object but {type(payload).__name__}")
        result["uuid"] = _request(client, "POST", "/api/invoke", json=payload).json()["data"]["uuid"]
        status = _follow(client, result["uuid"], poll_s)
        if status["status"] == "completed":
            images = enumerate(status["images"])
            result["images"] = [_save(client, entry, output, f"{number}_{index}.png") for index, entry in images]
        else:
            result["error"] = status.get("message") or f"the invocation ended {status['status']}"
        # Only now: a line whose images failed to download is not completed, so a rerun runs it again.
        result["status"] = status["status"]
    except LineError as error:
        result["error"] = str(error)
    except Exception as error:  # one line's surprise must not stop the others
        logger.exception("line %s failed", number)
        result["error"] = f"{type(error).__name__}: {error}"
    return result


def _request(client: httpx.Client, method: str, path: str, attempts: int = 5, **kwargs: Any) -> httpx.Response:
    """The response to a request, waiting out 429s (as Retry-After says) and retrying transient failures."""
    failures = 0
    while True:
        try:
            response = client.request(method, path, **kwargs)
        except httpx.TransportError as error:
            problem = f"{method} {path}: {type(error).__name__}: {error}"
        else:
            if response.status_code == 429:
                wait = response.headers.get("retry-after", "5")
                time.sleep(float(wait) if wait.isdigit() else 5.0)
                continue
            if response.is_success:
                return response
            if response.status_code not in TRANSIENT:
                raise LineError(_detail(response))
            problem = _detail(response)
        failures += 1
        if failures >= attempts:
            raise LineError(f"{problem} (gave up after {attempts} tries)")
        time.sleep(min(2.0**failures, 30.0))


def _detail(response: httpx.Response) -> str:
    """The server's own words for a failed response (the envelope's errors), else its status line."""
    try:
        errors = response.json()["errors"]
        return "; ".join(f"{error['status']} {error['title']}: {error['detail']}" for error in errors)
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} {response.reason_phrase}: {response.text[:200]}"


def _follow(client: httpx.Client, uuid: str, poll_s: float) -> dict[str, Any]:
    """The invocation's final status: from its event stream, or by polling when the stream fails."""
    try:
        with client.stream("GET", f"/api/invocation/{uuid}/events") as response:
            if response.is_success:
                event, data = "", ""
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data = line[5:].strip()
                    elif not line and data:
                        if event == "error":
                            raise LineError(json.loads(data).get("detail", data))
                        status = json.loads(data)
                        if status["status"] in FINAL:
                            return status
                        event, data = "", ""
    except httpx.TransportError:
        logger.info("the event stream of %s broke off; polling", uuid, exc_info=True)
    while True:
        status = _request(client, "GET", f"/api/invocation/{uuid}").json()["data"]
        if status["status"] in FINAL:
            return status
        time.sleep(poll_s)


def _save(client: httpx.Client, entry: str, output: Output, name: str) -> str:
    """Download one output as ``name`` and name it; a withheld one ("nsfw") stays "nsfw"."""
    if entry == "nsfw":
        return entry
    output.write(name, _request(client, "GET", "/api/invocation/" + entry).content)
    return name


class _Progress:
    """A text bar on ``stream``: redrawn in place on a terminal, a line per change in a log."""

    def __init__(self, total: int, done: int, stream: TextIO | None) -> None:
        self.total, self.done, self.failed, self.stream = total, done, 0, stream
        self.in_place = stream is not None and stream.isatty()
        self._draw()

    def advance(self, completed: bool) -> None:
        self.done += 1
        self.failed += not completed
        self._draw()

    def close(self) -> None:
        if self.in_place and self.stream is not None:
            self.stream.write("\n")

    def _draw(self) -> None:
        if self.stream is None:
            return
        filled = 30 * self.done // self.total if self.total else 30
        line = f"[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} lines, {self.failed} failed"
        self.stream.write(("\r" + line) if self.in_place else (line + "\n"))
        self.stream.flush()
