"""A job's progress on its way to the Store: latest wins, a few writes a second at most.

Denoising steps come far faster than anyone reads them (50 a second on a GPU); a round trip
to the one Store replica per step would cost more than the step. Writes never overlap and
never block the job: ``update`` only records where it stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

# Between writes: often enough that a poll sees the step move, rarely enough to cost nothing.
WRITE_INTERVAL_S = 0.15


State = tuple[int, int, tuple[str, ...] | None]  # step, total, the latest intermediate images


class ProgressWriter:
    def __init__(
        self, write: Callable[[int, int, list[str] | None], Awaitable[object]], interval: float = WRITE_INTERVAL_S
    ) -> None:
        self._write = write
        self._interval = interval
        self._latest: State | None = None
        self._written: State | None = None
        self._last_write = -float("inf")
        self._task: asyncio.Task[None] | None = None
        self._writing = False
        self._closed = False

    def update(self, step: int, total: int, intermediates: list[str] | None = None) -> None:
        """Where the job stands; ``intermediates`` replace the images shown while it runs."""
        shown = tuple(intermediates) if intermediates is not None else (self._latest[2] if self._latest else None)
        self._latest = (step, total, shown)
        if not self._closed and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._latest != self._written and not self._closed:
            wait = self._last_write + self._interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            latest = self._latest
            assert latest is not None
            self._last_write, self._writing = time.monotonic(), True
            step, total, shown = latest
            try:
                await self._write(step, total, list(shown) if shown is not None else None)
            finally:
                self._writing = False
            self._written = latest

    async def close(self) -> None:
        """Drop what is not written yet; wait for a write under way (so writes stay in order)."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        self._closed = True  # nothing more to write once this one is done
        if not self._writing:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
