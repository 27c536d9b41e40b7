"""Who still holds each active invocation. A Planner renews the leases of its jobs every few
seconds, queued or running; an invocation whose lease runs out lost its Planner (the replica
died, or stopped with the server) and goes back to the queue, unleased, for a Planner to adopt."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

# Long enough for a busy Planner to miss a renewal or two; short enough to notice a dead one.
LEASE_S = 30.0
# From admission until the Planner first renews (the ingress hands the job over meanwhile).
ADMISSION_GRACE_S = 60.0
# From a Store's start until the Planners still holding its queued jobs (the Store alone was
# restarted) have renewed them: two renewal rounds. Only then are they adopted to run again.
# Running ones get a whole lease (storage/invocations.py).
RESTART_GRACE_S = 10.0


class Leases:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}

    def grant(self, uuid: str, seconds: float = ADMISSION_GRACE_S) -> None:
        with self._lock:
            self._expiry[uuid] = self._clock() + seconds

    def renew(self, uuids: Iterable[str], seconds: float = LEASE_S) -> None:
        """Extend the leases of ``uuids`` that are still held (an ended one is not revived)."""
        until = self._clock() + seconds
        with self._lock:
            for uuid in uuids:
                if uuid in self._expiry:
                    self._expiry[uuid] = until

    def held(self, uuid: str) -> bool:
        with self._lock:
            return uuid in self._expiry

    def release(self, uuid: str) -> None:
        with self._lock:
            self._expiry.pop(uuid, None)

    def expired(self) -> list[str]:
        now = self._clock()
        with self._lock:
            return [uuid for uuid, until in self._expiry.items() if until < now]
