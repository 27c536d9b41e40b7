"""Wake asyncio waiters from the Store's worker threads: "this invocation is no longer active"."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Callable


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class EndSignals:
    """Waiters per invocation; ``notify`` may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: defaultdict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = (
            defaultdict(list)
        )

    async def wait(self, uuid: str, active: Callable[[], bool]) -> None:
        """Return once ``uuid`` is notified, or at once when ``active()`` is already False."""
        loop = asyncio.get_running_loop()
        waiter = (loop, loop.create_future())
        with self._lock:
            self._waiters[uuid].append(waiter)
        try:
            if active():  # checked after registering, so a notify in between is not lost
                await waiter[1]
        finally:
            with self._lock:
                waiters = self._waiters.get(uuid, [])
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self._waiters.pop(uuid, None)

    def notify(self, uuid: str) -> None:
        with self._lock:
            waiters = self._waiters.pop(uuid, [])
        for loop, future in waiters:
            loop.call_soon_threadsafe(_wake, future)
