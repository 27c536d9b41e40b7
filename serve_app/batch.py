"""``enfugue-serve batch``: run a JSONL file of invoke payloads through a running app.

Each line is POSTed to /api/invoke, followed to its end (server-sent events, polling when they
fail), and its images saved as ``<line>_<index>.png``; one JSON line per input line goes to
``results.jsonl``. A rerun skips the lines recorded there as completed.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TextIO

import httpx

logger = logging.getLogger(__name__)

RESULTS = "results.jsonl"
FINAL = frozenset({"completed", "error", "cancelled"})
# The event stream sends a comment every 15 s while nothing changes: a read waits longer than that.
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# Ray Serve answers 503 while its replicas' queues are full: as passing as a dropped connection.
TRANSIENT = frozenset({502, 503, 504})


class LineError(Exception):
    """A line that cannot complete; its message goes to the results file."""


def make_client(url: str, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT)


def login(client: httpx.Client, username: str, password: str) -> str:
    """An access token for ``username`` (POST /api/login)."""
    response = _request(client, "POST", "/api/login", json={"username": username, "password": password})
    return response.json()["data"]["attributes"]["access_token"]


def run_batch(
    lines_path: Path,
    out_dir: Path,
    client: httpx.Client,
    concurrency: int = 2,
    progress: TextIO | None = sys.stderr,
    poll_s: float = 1.0,
) -> int:
    """Run every line not yet completed, ``concurrency`` at a time; 0 when all lines completed, else 1."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    lines = [(number, text) for number, text in enumerate(lines_path.read_text().splitlines(), 1) if text.strip()]
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / RESULTS
    done = _completed(results)
    pending = [(number, text) for number, text in lines if number not in done]
    bar = _Progress(len(lines), len(lines) - len(pending), progress)
    failed = 0
    if results.exists() and not results.read_bytes().endswith(b"\n") and results.stat().st_size:
        with results.open("a") as record:  # a record cut short by a kill: the next starts a line of its own
            record.write("\n")
    pool = ThreadPoolExecutor(max_workers=concurrency)
    try:
        with results.open("a") as record:
            futures = [pool.submit(_run_line, client, number, text, out_dir, poll_s) for number, text in pending]
            for future in as_completed(futures):
                result = future.result()
                record.write(json.dumps(result) + "\n")
                record.flush()
                failed += result["status"] != "completed"
                bar.advance(result["status"] == "completed")
    finally:  # on Ctrl+C, start no further lines (the ones under way finish, unrecorded)
        pool.shutdown(wait=False, cancel_futures=True)
    bar.close()
    summary = (
        f"batch: {len(lines)} lines, {len(lines) - failed} completed ({len(lines) - len(pending)} before this run), "
        f"{failed} not completed; results in {results}"
    )
    if progress is not None:
        progress.write(summary + "\n")
    return 1 if failed else 0


def _completed(results: Path) -> set[int]:
    """Lines whose latest record in ``results`` says completed."""
    latest: dict[int, str] = {}
    if results.exists():
        for text in results.read_text().splitlines():
            try:
                entry = json.loads(text)
                latest[int(entry["line"])] = entry["status"]
            except (ValueError, KeyError, TypeError):  # a record cut short by a kill: run its line again
                continue
    return {line for line, status in latest.items() if status == "completed"}


def _run_line(client: httpx.Client, number: int, text: str, out_dir: Path, poll_s: float) -> dict[str, Any]:
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
            result["images"] = [_save(client, entry, out_dir / f"{number}_{index}.png") for index, entry in images]
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


def _save(client: httpx.Client, entry: str, path: Path) -> str:
    """Download one output to ``path`` and name it; a withheld one ("nsfw") stays "nsfw"."""
    if entry == "nsfw":
        return entry
    path.write_bytes(_request(client, "GET", "/api/invocation/" + entry).content)
    return path.name


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
