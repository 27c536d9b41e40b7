"""Whose job goes next: the user served longest ago (or never), then that user's oldest job."""

from __future__ import annotations

from deployments.turns import Rotation, Turn


def take_all(rotation: Rotation, waiting: list[Turn | None]) -> list[Turn | None]:
    taken = []
    while waiting:
        chosen = rotation.fairest(waiting, lambda turn: turn)
        waiting.remove(chosen)
        rotation.taken(chosen)
        taken.append(chosen)
    return taken


def test_users_take_turns_and_each_users_jobs_go_oldest_first() -> None:
    a1, a2, a3, b1, b2, c1 = Turn(1, 10), Turn(1, 11), Turn(1, 12), Turn(2, 13), Turn(2, 14), Turn(3, 15)
    assert take_all(Rotation(), [a3, b2, a1, c1, a2, b1]) == [a1, b1, c1, a2, b2, a3]


def test_a_user_just_served_waits_behind_one_who_was_not() -> None:
    rotation = Rotation()
    rotation.taken(Turn(1, 1))  # user 1's first job is running
    later = Turn(2, 9)
    assert rotation.fairest([Turn(1, 2), Turn(1, 3), later], lambda turn: turn) == later


def test_a_job_without_a_turn_comes_after_those_with_one() -> None:
    assert take_all(Rotation(), [None, Turn(5, 3), Turn(4, 7)]) == [Turn(5, 3), Turn(4, 7), None]
    assert Rotation().fairest([], lambda turn: turn) is None


def test_a_job_cancelled_as_the_turn_passes_is_skipped() -> None:
    """A waiting job's cancel takes effect at once on what it waits for, but its own code runs a
    moment later: a turn passing meanwhile goes to the next job, not to the cancelled one."""
    import asyncio

    from deployments.turns import TurnGate

    async def scenario() -> list[str]:
        gate, ran, release = TurnGate(), [], asyncio.Event()

        async def job(name: str, turn: Turn) -> None:
            async with gate.turn(turn):
                ran.append(name)
                if name == "first":
                    await release.wait()

        first = asyncio.ensure_future(job("first", Turn(1, 1)))
        await asyncio.sleep(0)
        cancelled = asyncio.ensure_future(job("cancelled", Turn(2, 2)))
        third = asyncio.ensure_future(job("third", Turn(3, 3)))
        await asyncio.sleep(0)
        release.set()  # the first ends before the cancelled one sees its cancel
        cancelled.cancel()
        await asyncio.gather(first, third)
        assert cancelled.cancelled()
        return ran

    assert asyncio.run(scenario()) == ["first", "third"]
