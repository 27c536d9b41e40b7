"""The fake role the API tier runs on keeps the role contract, so what passes there holds for real roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments.plan import make_plan
from deployments.request import Checkpoint, GenerationRequest
from tests.deployments.role_contract import RoleContract
from tests.fake_role import FakeRole, write_fake_checkpoint


class TestFakeRoleContract(RoleContract):
    @pytest.fixture
    def role(self, tmp_path: Path) -> FakeRole:
        write_fake_checkpoint(tmp_path / "fake")
        return FakeRole(step_seconds=0.002, checkpoints=tmp_path)

    @pytest.fixture
    def model_id(self) -> str:
        return "fake"

    @pytest.fixture
    def make_step(self):  # noqa: ANN201
        def step(seed: int, steps: int):  # noqa: ANN202
            request = GenerationRequest(Checkpoint("fake", 64), seed=seed, num_inference_steps=steps)
            return make_plan(request, random_seed=0).steps[0]

        return step


def test_the_deployment_shell_runs_one_job_at_a_time_and_takes_the_waiting_ones_fairly(tmp_path: Path) -> None:
    """Jobs sent to one replica at once (as an in-process caller does; Serve sends one at a time)
    start one after another, each when the one before has ended (``Started``, its model, its
    steps), round-robin between users and oldest first within one; one cancelled while it waits
    holds nobody up."""
    import asyncio

    from deployments.role import Outputs, Started
    from deployments.turns import Turn
    from tests.local_handles import LocalRole

    write_fake_checkpoint(tmp_path / "fake")
    shell = LocalRole(FakeRole(step_seconds=0.01, checkpoints=tmp_path))
    step = make_plan(GenerationRequest(Checkpoint("fake", 64), seed=1, num_inference_steps=5), random_seed=0).steps[0]
    # In the order they are sent: user 1's five, a job without a turn, then user 2's three.
    sent = [("a", Turn(1, n)) for n in range(1, 6)] + [("none", None)] + [("b", Turn(2, n)) for n in range(6, 9)]

    async def jobs() -> list[tuple[str, str]]:
        timeline: list[tuple[str, str]] = []

        async def job(turn: Turn | None) -> None:
            name = f"{turn.owner}.{turn.admitted}" if turn else "none"
            async for event in shell.generate(step, [], turn=turn):
                if isinstance(event, Started | Outputs):
                    timeline.append((name, type(event).__name__))

        tasks = [asyncio.ensure_future(job(turn)) for _, turn in sent]
        await asyncio.sleep(0.02)  # the first runs, the rest wait; user 1's second gives up
        tasks[1].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return timeline

    timeline = asyncio.run(jobs())
    started = [name for name, event in timeline if event == "Started"]
    assert started == ["1.1", "2.6", "1.3", "2.7", "1.4", "2.8", "1.5", "none"]
    # One at a time: each ends before the next starts.
    assert timeline == [(name, event) for name in started for event in ("Started", "Outputs")]
