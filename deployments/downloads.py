"""Model files fetched over HTTP(S) into the model folders, in their own deployment.

Admins start them (POST /api/download); at most ``max_concurrent_downloads`` run and
``max_queued_downloads`` wait (both settings, passed with each start); the rest are refused
with 429. Only http(s) URLs, redirects included; the file name stays in its folder. Files go
to the shared storage (``storage.shared``), where they appear only when whole, so a failed or
cancelled download leaves nothing behind. The list lives in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from ray import serve

from serve_app.errors import BadRequestError, StateConflictError, TooManyRequestsError
from serve_app.metrics import downloaded
from serve_app.remote import errors_as_values
from storage.files import MODEL_EXTENSIONS, MODEL_KINDS
from storage.shared import shared_storage

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
FINISHED = ("complete", "error", "canceled")


@dataclass
class Download:
    id: int
    url: str
    kind: str
    filename: str
    destination: str  # <kind>/<filename>
    status: str = "queued"
    downloaded: int = 0
    total: int | None = None
    started: float | None = None
    ended: float | None = None
    message: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def view(self) -> dict[str, Any]:
        elapsed = None if self.started is None else (self.ended or time.monotonic()) - self.started
        return {
            "id": self.id, "status": self.status, "source": self.url,
            "destination": f"{self.kind}/{self.filename}", "filename": self.filename,
            "elapsed": elapsed, "downloaded": self.downloaded, "total": self.total,
            **({"message": self.message} if self.message else {}),
        }  # fmt: skip


class Downloader:
    def __init__(self, data_dir: str, max_bytes: int | None = None, storage_url: str | None = None) -> None:
        self._storage = shared_storage(data_dir, storage_url).ensure()
        self._max_bytes = max_bytes
        self._downloads: list[Download] = []
        self._ids = itertools.count(1)
        self._concurrent = 1

    async def start(
        self, url: str, kind: str, filename: str, overwrite: bool, max_concurrent: int, max_queued: int
    ) -> dict[str, Any]:
        """Queue a download (it starts at once when fewer than ``max_concurrent`` run)."""
        destination = self._destination(kind, filename)
        _check_url(url, "url")
        # Before the checks below: nothing may come between them and the queueing.
        exists = await asyncio.to_thread(self._storage.exists, kind, filename)
        if any(d.destination == destination and d.status not in FINISHED for d in self._downloads):
            raise StateConflictError(f"filename: {kind}/{filename} is being downloaded already")
        if exists and not overwrite:
            raise StateConflictError(f"filename: {kind}/{filename} exists; pass overwrite: true to replace it")
        if sum(d.status == "queued" for d in self._downloads) >= max_queued:
            raise TooManyRequestsError(f"The download queue is full ({max_queued} waiting).", retry_after=10)
        download = Download(next(self._ids), url, kind, filename, destination)
        self._downloads.append(download)
        self._concurrent = max_concurrent
        self._start_waiting()
        return download.view()

    def list(self) -> list[dict[str, Any]]:
        return [download.view() for download in self._downloads]

    def counts(self) -> dict[str, int]:
        active = sum(d.status == "downloading" for d in self._downloads)
        queued = sum(d.status == "queued" for d in self._downloads)
        return {"active": active, "queued": queued, "total": len(self._downloads)}

    async def cancel(self, url: str) -> list[dict[str, Any]]:
        """Cancel every unfinished download of ``url``; what they are now."""
        cancelled = [d for d in self._downloads if d.url == url and d.status not in FINISHED]
        for download in cancelled:
            if download.task is not None:
                download.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await download.task
            self._finish(download, "canceled")
        self._start_waiting()
        return [download.view() for download in cancelled]

    def check_health(self) -> None:
        return None

    # helpers

    def _destination(self, kind: str, filename: str) -> str:
        if kind not in MODEL_KINDS:
            raise BadRequestError(f"type: {kind!r:.40} is not a model folder; allowed: {', '.join(MODEL_KINDS)}")
        name = Path(filename)
        if name.name != filename or filename.startswith(".") or "\\" in filename or "\x00" in filename:
            raise BadRequestError(f"filename: {filename!r:.80} must be a plain file name (no folders, no leading dot)")
        if name.suffix.lower() not in MODEL_EXTENSIONS:
            raise BadRequestError(f"filename: must end in one of {', '.join(MODEL_EXTENSIONS)}")
        return f"{kind}/{filename}"

    def _start_waiting(self) -> None:
        running = sum(d.status == "downloading" for d in self._downloads)
        for download in self._downloads:
            if running >= self._concurrent:
                break
            if download.status == "queued":
                download.status, download.started = "downloading", time.monotonic()
                download.task = asyncio.get_running_loop().create_task(self._run(download))
                running += 1

    async def _run(self, download: Download) -> None:
        try:
            await self._fetch(download)
            self._finish(download, "complete")
            logger.info("downloaded %s to %s/%s", download.url, download.kind, download.filename)
        except asyncio.CancelledError:
            raise
        except (httpx.HTTPError, OSError, BadRequestError) as error:
            detail = error.detail if isinstance(error, BadRequestError) else f"{type(error).__name__}: {error}"
            self._finish(download, "error", detail[:300])
            logger.warning("download of %s failed: %s", download.url, detail)
        finally:
            self._start_waiting()

    async def _fetch(self, download: Download) -> None:
        url = download.url
        async with httpx.AsyncClient(follow_redirects=False, timeout=httpx.Timeout(30, read=120)) as client:
            for _ in range(MAX_REDIRECTS + 1):
                async with client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        _check_url(url, "redirect")
                        continue
                    if response.status_code != 200:
                        raise BadRequestError(f"the server answered HTTP {response.status_code}")
                    length = response.headers.get("content-length")
                    download.total = int(length) if length and length.isdigit() else None
                    self._check_size(download.total)
                    # The file appears when the block ends without an error (or a cancel).
                    with self._storage.writer(download.kind, download.filename) as file:
                        async for chunk in response.aiter_bytes():  # as it arrives: progress moves
                            download.downloaded += len(chunk)
                            self._check_size(download.downloaded)
                            # In a thread: on an object store a write may upload a part.
                            await asyncio.to_thread(file.write, chunk)
                            downloaded(len(chunk))
                        if download.total is not None and download.downloaded != download.total:
                            raise BadRequestError(
                                f"the transfer ended at {download.downloaded} of {download.total} bytes"
                            )
                    return
        raise BadRequestError(f"more than {MAX_REDIRECTS} redirects")

    def _check_size(self, size: int | None) -> None:
        if size is not None and self._max_bytes is not None and size > self._max_bytes:
            raise BadRequestError(f"larger than the limit of {self._max_bytes} bytes")

    @staticmethod
    def _finish(download: Download, status: str, message: str | None = None) -> None:
        download.status, download.ended, download.message = status, time.monotonic(), message


def _check_url(url: str, field_name: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequestError(f"{field_name}: only http:// and https:// URLs are fetched, got {url!r:.100}")


Downloads = serve.deployment(
    name="Downloads", num_replicas=1, max_ongoing_requests=100, logging_config={"enable_access_log": False}
)(errors_as_values(Downloader))
