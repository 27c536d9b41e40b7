"""Failed logins slow the next tries down, per user and address, per address, per user."""

from __future__ import annotations

import pytest

from serve_app.errors import TooManyRequestsError
from storage.throttle import FORGET_AFTER_S, LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def fail(throttle: LoginThrottle, times: int, username: str = "enfugue", address: str = "10.0.0.1") -> None:
    for _ in range(times):
        throttle.check(username, address)
        throttle.failed(username, address)


def test_five_free_failures_then_waits_that_double(clock: Clock) -> None:
    throttle = LoginThrottle(clock)
    fail(throttle, 5)
    throttle.failed("enfugue", "10.0.0.1")  # the sixth: wait 1 s
    with pytest.raises(TooManyRequestsError) as refused:
        throttle.check("enfugue", "10.0.0.1")
    assert refused.value.retry_after == 1
    clock.now += 1
    throttle.check("enfugue", "10.0.0.1")
    throttle.failed("enfugue", "10.0.0.1")  # the seventh: 2 s
    with pytest.raises(TooManyRequestsError) as refused:
        throttle.check("enfugue", "10.0.0.1")
    assert refused.value.retry_after == 2


def test_the_real_user_elsewhere_is_not_locked_out_by_one_attacker(clock: Clock) -> None:
    throttle = LoginThrottle(clock)
    fail(throttle, 6)
    with pytest.raises(TooManyRequestsError):
        throttle.check("enfugue", "10.0.0.1")
    throttle.check("enfugue", "192.168.1.5")


def test_an_address_guessing_many_users_is_slowed(clock: Clock) -> None:
    throttle = LoginThrottle(clock)
    for index in range(20):
        fail(throttle, 1, username=f"user{index}")
    throttle.failed("another", "10.0.0.1")
    with pytest.raises(TooManyRequestsError):
        throttle.check("yet-another", "10.0.0.1")


def test_spread_guesses_lock_a_user_out_for_at_most_30_seconds(clock: Clock) -> None:
    throttle = LoginThrottle(clock)
    for index in range(80):
        clock.now += 61  # each address's own waits have passed
        fail(throttle, 1, address=f"10.0.{index}.1")
    with pytest.raises(TooManyRequestsError) as refused:
        throttle.check("enfugue", "192.168.1.5")
    assert refused.value.retry_after <= 30
    clock.now += 30
    throttle.check("enfugue", "192.168.1.5")


def test_success_and_time_forgive(clock: Clock) -> None:
    throttle = LoginThrottle(clock)
    fail(throttle, 5)
    throttle.succeeded("enfugue", "10.0.0.1")
    fail(throttle, 5)  # five free again
    throttle.failed("enfugue", "10.0.0.1")
    clock.now += FORGET_AFTER_S + 1
    throttle.check("enfugue", "10.0.0.1")
