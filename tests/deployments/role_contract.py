"""The contract every model role passes, on tiny models (in the manner of diffusers' PipelineTesterMixin).

A role's test class inherits ``RoleContract`` and provides the fixtures ``role`` (a role
instance), ``model_id`` (one it can load) and ``make_step`` (seed, steps -> a step it runs),
and ``inputs`` when its steps read images (the prepared inputs of those steps).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from deployments.role import Outputs, Progress, Started, stream
from serve_app.errors import APIError, BadRequestError

MakeStep = Callable[[int, int], Any]


def run(role: Any, model: Any, step: Any, inputs: list[Any] | None = None) -> list[Any]:
    """Every event of one stream, to its end."""

    async def collect() -> list[Any]:
        async def loaded() -> Any:
            return model

        return [event async for event in stream(role, loaded, step, inputs or [])]

    return asyncio.run(collect())


def pixels(events: list[Any]) -> list[np.ndarray]:
    outputs = events[-1]
    assert isinstance(outputs, Outputs), events[-1]
    return [np.asarray(image) for image in outputs.images]


class RoleContract:
    @pytest.fixture
    def inputs(self) -> list[Any]:
        return []

    @pytest.fixture
    def inputs_for(self, inputs: list[Any]) -> Callable[[Any], list[Any]]:
        """The input images of a step (the same ``inputs`` for every step, unless overridden)."""
        return lambda step: inputs

    def expected_outputs(self, step: Any) -> int:
        return len(step.seeds)

    def test_loads_a_model_and_refuses_an_unknown_one(self, role: Any, model_id: str) -> None:
        assert role.load(model_id) is not None
        with pytest.raises(BadRequestError):
            role.load("no-such-model")
        with pytest.raises(BadRequestError):
            role.load("../outside")

    def test_a_model_that_cannot_load_ends_the_stream_with_the_error(
        self, role: Any, make_step: MakeStep, inputs_for: Callable[[Any], list[Any]]
    ) -> None:
        async def failing() -> Any:
            return role.load("no-such-model")

        step = make_step(1, 2)

        async def collect() -> list[Any]:
            return [event async for event in stream(role, failing, step, inputs_for(step))]

        events = asyncio.run(collect())
        assert isinstance(events[0], Started) and isinstance(events[-1], APIError)

    def test_honours_the_seed(
        self, role: Any, model_id: str, make_step: MakeStep, inputs_for: Callable[[Any], list[Any]]
    ) -> None:
        model = role.load(model_id)
        first = pixels(run(role, model, make_step(7, 3), inputs_for(make_step(7, 3))))
        again = pixels(run(role, model, make_step(7, 3), inputs_for(make_step(7, 3))))
        other = pixels(run(role, model, make_step(8, 3), inputs_for(make_step(8, 3))))
        assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
        assert not np.array_equal(first[0], other[0])

    def test_streams_progress_then_its_outputs(
        self, role: Any, model_id: str, make_step: MakeStep, inputs_for: Callable[[Any], list[Any]]
    ) -> None:
        step = make_step(3, 4)
        events = run(role, role.load(model_id), step, inputs_for(step))
        assert isinstance(events[0], Started)
        progress = [event for event in events if isinstance(event, Progress)]
        assert progress, events
        steps = [event.step for event in progress]
        assert steps == sorted(steps) and steps[-1] == progress[-1].total == step.expected_steps
        assert len(pixels(events)) == self.expected_outputs(step)

    def test_stops_when_its_stream_is_closed_and_runs_again(
        self, role: Any, model_id: str, make_step: MakeStep, inputs_for: Callable[[Any], list[Any]]
    ) -> None:
        model = role.load(model_id)
        long = make_step(5, 400)

        async def close_after_first_progress() -> tuple[list[Any], float]:
            async def loaded() -> Any:
                return model

            events: list[Any] = []
            generator = stream(role, loaded, long, inputs_for(long))
            async for event in generator:
                events.append(event)
                if isinstance(event, Progress):
                    break
            closing = time.monotonic()
            await generator.aclose()  # as a cancelled Serve stream does; returns once the role stopped
            return events, time.monotonic() - closing

        events, closing = asyncio.run(close_after_first_progress())
        assert not any(isinstance(event, Outputs) for event in events)
        assert closing < 2.0, f"the role ran on for {closing:.2f} s after its stream was closed"
        short = make_step(5, 2)
        assert len(pixels(run(role, model, short, inputs_for(short)))) == self.expected_outputs(short)
