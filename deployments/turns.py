"""Whose job a model role takes next: round-robin between users, first come, first served within one.

Jobs wait for a role in two places, and both take the next one by ``Rotation.fairest``: the request
router in the caller (deployments/affinity_router.py), where they wait for a free replica, and the
role shell (``TurnGate``, deployments/role.py), where one waits for the job running on its replica.
A user's batch of 200 therefore holds another user's job behind one of its own per replica, not
behind all 200. Each step carries its invocation's ``Turn``; the Planner sends it with the step.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Turn:
    """An invocation's place in line: its user, and its id, which the Store gives in the order
    invocations are admitted (a job run again after a restart keeps its place)."""

    owner: int
    admitted: int


class Rotation:
    """The users' order: the one whose job was taken longest ago (or never) goes first; a user's
    own jobs go oldest first."""

    def __init__(self) -> None:
        self._taken: dict[int, int] = {}  # owner -> the ordinal of their latest job taken
        self._ordinals = itertools.count()

    def fairest(self, waiting: Iterable[T], turn_of: Callable[[T], Turn | None]) -> T | None:
        """The job of ``waiting`` to take next; a job without a turn comes after those with one."""
        return min(waiting, key=lambda job: self._key(turn_of(job)), default=None)

    def taken(self, turn: Turn | None) -> None:
        """A job of ``turn``'s owner was taken: the other users' go before their next."""
        if turn is not None:
            self._taken[turn.owner] = next(self._ordinals)

    def _key(self, turn: Turn | None) -> tuple[float, float]:
        if turn is None:
            return (math.inf, math.inf)
        return (self._taken.get(turn.owner, -1), turn.admitted)


class TurnGate:
    """One job at a time; when it ends, the fairest waiting job goes in (asyncio's lock would take
    them in the order they came)."""

    def __init__(self) -> None:
        self._rotation = Rotation()
        self._busy = False
        self._waiting: dict[asyncio.Future[None], Turn | None] = {}

    @contextlib.asynccontextmanager
    async def turn(self, turn: Turn | None) -> AsyncIterator[None]:
        if self._busy:
            admitted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting[admitted] = turn
            try:
                await admitted
            except asyncio.CancelledError:
                if admitted in self._waiting:
                    del self._waiting[admitted]
                else:  # handed the turn as it was cancelled: the next one takes it
                    self._hand_over()
                raise
        self._busy = True
        self._rotation.taken(turn)
        try:
            yield
        finally:
            self._hand_over()

    def _hand_over(self) -> None:
        # A job cancelled while it waits has its future cancelled at once; it leaves the line itself.
        waiting = (admitted for admitted in self._waiting if not admitted.done())
        chosen = self._rotation.fairest(waiting, self._waiting.__getitem__)
        if chosen is None:
            self._busy = False
            return
        del self._waiting[chosen]
        chosen.set_result(None)  # busy still: the turn passes straight to it
