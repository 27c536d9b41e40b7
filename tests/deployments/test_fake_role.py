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


def test_the_deployment_shell_runs_one_job_at_a_time_and_the_next_starts_with_its_turn(tmp_path: Path) -> None:
    """Serve sends a replica JOBS_PER_REPLICA jobs; the second waits its turn inside the replica
    and starts (``Started``, its model, its steps) only once the first's stream is done."""
    import asyncio

    from deployments.role import JOBS_PER_REPLICA, Outputs, Started
    from tests.local_handles import LocalRole

    write_fake_checkpoint(tmp_path / "fake")
    shell = LocalRole(FakeRole(step_seconds=0.01, checkpoints=tmp_path))
    step = make_plan(GenerationRequest(Checkpoint("fake", 64), seed=1, num_inference_steps=5), random_seed=0).steps[0]

    async def jobs() -> list[tuple[int, str]]:
        timeline: list[tuple[int, str]] = []

        async def job(index: int) -> None:
            async for event in shell.generate(step, []):
                if isinstance(event, Started | Outputs):
                    timeline.append((index, type(event).__name__))

        await asyncio.gather(*(job(index) for index in range(JOBS_PER_REPLICA + 1)))
        return timeline

    timeline = asyncio.run(jobs())
    assert JOBS_PER_REPLICA == 2
    assert timeline == [(0, "Started"), (0, "Outputs"), (1, "Started"), (1, "Outputs"), (2, "Started"), (2, "Outputs")]
