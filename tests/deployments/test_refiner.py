"""The Refiner role on a tiny SDXL refiner (real pipelines): it refines each output of the base with
its seed, its aesthetic scores and guidance count, and it passes the role contract."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deployments.base import BaseRole, RefinerRole
from deployments.plan import make_plan
from deployments.request import Checkpoint, GenerationRequest
from deployments.steps import Refine
from serve_app.errors import BadRequestError
from storage.files import DataPaths
from tests.deployments.role_contract import RoleContract, pixels, run
from tests.images import gradient
from tests.tiny_models import (
    tiny_sdxl_pipeline,
    tiny_sdxl_refiner_pipeline,
    write_diffusers_folder,
    write_ldm_checkpoint,
)

REFINER = "tiny-refiner.safetensors"


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> DataPaths:
    paths = DataPaths(tmp_path_factory.mktemp("data")).ensure()
    write_diffusers_folder(tiny_sdxl_pipeline(), paths.models("checkpoint") / "tiny-xl")
    write_ldm_checkpoint(tiny_sdxl_refiner_pipeline(), paths.models("checkpoint"), REFINER)
    return paths


def refine(samples: int = 1, **request: object) -> Refine:
    fields = {
        "num_inference_steps": 4,
        "seed": 3,
        "scheduler": "ddim",
        "samples": samples,
        "refiner_strength": 0.5,
        **request,
    }
    plan = make_plan(GenerationRequest(Checkpoint("tiny-xl", 64), refiner=Checkpoint(REFINER, 64), **fields), 0)  # type: ignore[arg-type]
    step = plan.steps[-1]
    assert isinstance(step, Refine)
    return step


def sources(count: int = 1) -> list[Image.Image]:
    return [gradient(64, 64).rotate(90 * index) for index in range(count)]


class TestRefinerRoleContract(RoleContract):
    @pytest.fixture
    def role(self, paths: DataPaths) -> RefinerRole:
        return RefinerRole(str(paths.root))

    @pytest.fixture
    def model_id(self) -> str:
        return REFINER

    @pytest.fixture
    def make_step(self):  # noqa: ANN201
        # The contract's long step must run many steps: strength 1 keeps them all.
        return lambda seed, steps: refine(seed=seed, num_inference_steps=steps, refiner_strength=1.0)

    @pytest.fixture
    def inputs(self) -> list[Image.Image]:
        return sources()


def test_each_output_is_refined_with_its_own_seed(paths: DataPaths) -> None:
    role = RefinerRole(str(paths.root))
    model = role.load(REFINER)
    step = refine(samples=2)
    assert step.expected_steps == 2
    first, second = pixels(run(role, model, step, sources(2)))
    alone = pixels(run(role, model, refine(samples=1, seed=4), sources(2)[1:]))[0]
    assert np.abs(second.astype(int) - alone.astype(int)).max() <= 2  # sample 1 = seed 4, from its own image
    assert not np.array_equal(first, second)
    assert np.abs(first.astype(int) - np.asarray(sources()[0]).astype(int)).mean() > 1  # it changed the image


@pytest.mark.parametrize(
    "changed",
    [{"refiner_aesthetic_score": 1.0}, {"refiner_negative_aesthetic_score": 9.0}, {"refiner_guidance_scale": 1.0}],
)
def test_the_refiners_values_are_not_ignored(paths: DataPaths, changed: dict) -> None:
    role = RefinerRole(str(paths.root))
    model = role.load(REFINER)
    plain = pixels(run(role, model, refine(), sources()))[0]
    assert not np.array_equal(plain, pixels(run(role, model, refine(**changed), sources()))[0])


def test_a_refiner_checkpoint_only_refines(paths: DataPaths) -> None:
    with pytest.raises(BadRequestError, match="cannot generate from text"):
        BaseRole(str(paths.root)).load(REFINER)
