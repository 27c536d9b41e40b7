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
