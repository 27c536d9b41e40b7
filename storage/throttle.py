"""Failed logins slow the next tries down, so passwords cannot be guessed at speed.

Three counters, each with the failures it forgives and the longest wait it imposes:

- a user from one client address: 5 free, then 1, 2, 4 ... seconds, at most 5 minutes;
- one client address, whatever the user: 20 free, at most 5 minutes;
- one user, from anywhere: 50 free, at most 30 seconds, so that an attacker spreading guesses
  over many addresses cannot keep the real user locked out for long.

A refused try is checked before the password (a throttled guess costs no hashing); a success
clears its user-and-address counter. Counters forget failures after 15 quiet minutes. In memory:
the Store is one process, and a restart forgetting them costs an attacker a restart.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from serve_app.errors import TooManyRequestsError

FORGET_AFTER_S = 15 * 60
_KEPT_COUNTERS = 100_000


@dataclass(frozen=True)
class Rule:
    kind: str
    free: int
    longest_wait_s: float


RULES = (Rule("user at address", 5, 300), Rule("address", 20, 300), Rule("user", 50, 30))


@dataclass
class _Counter:
    failures: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0


class LoginThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._counters: OrderedDict[tuple[str, str], _Counter] = OrderedDict()

    def check(self, username: str, address: str) -> None:
        """429 with the seconds to wait when any counter of this try is still waiting."""
        now = self._clock()
        with self._lock:
            wait = max((self._counter(key, now).blocked_until - now for key in _keys(username, address)), default=0)
        if wait > 0:
            raise TooManyRequestsError(
                f"Too many failed logins; try again in {math.ceil(wait)} s.", retry_after=math.ceil(wait)
            )

    def failed(self, username: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            for rule, key in zip(RULES, _keys(username, address), strict=True):
                counter = self._counter(key, now)
                counter.failures += 1
                counter.last_failure = now
                over = counter.failures - rule.free
                if over > 0:
                    counter.blocked_until = now + min(2.0 ** (over - 1), rule.longest_wait_s)

    def succeeded(self, username: str, address: str) -> None:
        with self._lock:
            self._counters.pop(_keys(username, address)[0], None)

    def _counter(self, key: tuple[str, str], now: float) -> _Counter:
        counter = self._counters.get(key)
        if counter is None or now - counter.last_failure > FORGET_AFTER_S:
            counter = self._counters[key] = _Counter()
            if len(self._counters) > _KEPT_COUNTERS:
                self._counters.popitem(last=False)
        self._counters.move_to_end(key)
        return counter


def _keys(username: str, address: str) -> tuple[tuple[str, str], ...]:
    """The counters of one try, in the order of RULES."""
    return (("user at address", f"{username}\x00{address}"), ("address", address), ("user", username))
