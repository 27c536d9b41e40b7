"""Versions of each invocation's status, and asyncio waiters for the next version.

The Store's methods run in its worker threads and on its event loop; ``notify`` may be called
from any of them and wakes waiters on their own loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict, defaultdict

# Versions kept (least recently changed go first): a forgotten one reads as 0, which only
# makes a watcher of that invocation look once more.
_KEPT_VERSIONS = 10_000

Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Changes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: OrderedDict[str, int] = OrderedDict()
        self._waiters: defaultdict[str, list[Waiter]] = defaultdict(list)

    def version(self, uuid: str) -> int:
        with self._lock:
            return self._versions.get(uuid, 0)

    def notify(self, uuid: str) -> None:
        """The status of ``uuid`` changed: a new version, and every waiter wakes."""
        with self._lock:
            self._versions[uuid] = self._versions.get(uuid, 0) + 1
            self._versions.move_to_end(uuid)
            if len(self._versions) > _KEPT_VERSIONS:
                self._versions.popitem(last=False)
            waiters = self._waiters.pop(uuid, [])
        for loop, future in waiters:
            loop.call_soon_threadsafe(_wake, future)

    async def wait(self, uuid: str, seen: int, timeout: float | None = None) -> int:
        """The version of ``uuid`` once it is not ``seen`` (at once if it is not already), or
        ``seen`` when ``timeout`` seconds passed first."""
        loop = asyncio.get_running_loop()
        waiter: Waiter = (loop, loop.create_future())
        with self._lock:
            current = self._versions.get(uuid, 0)
            if current != seen:
                return current
            self._waiters[uuid].append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter[1], timeout)
        finally:
            with self._lock:
                waiters = self._waiters.get(uuid, [])
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self._waiters.pop(uuid, None)
        return self.version(uuid)
