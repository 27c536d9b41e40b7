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
