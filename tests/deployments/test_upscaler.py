"""The Upscaler role on tiny real models: a Real-ESRGAN file (spandrel) and a U2-Net-shaped ONNX
segmenter; it passes the role contract, and Pillow's methods need no file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from deployments.image_steps import BACKGROUND_FILE, UPSCALE_FILES, RemoveBackground, Upscale
from deployments.steps import StepOutputs
from deployments.upscaler import UpscalerRole
from serve_app.errors import BadRequestError
from storage.files import DataPaths
from tests.deployments.role_contract import RoleContract, pixels, run
from tests.deployments.test_background import red_square_on_blue
from tests.tiny_filters import write_tiny_segmenter
from tests.tiny_upscalers import write_tiny_esrgan

ESRGAN = UPSCALE_FILES["esrgan"]


@pytest.fixture(scope="module")
def role(tmp_path_factory: pytest.TempPathFactory) -> UpscalerRole:
    paths = DataPaths(tmp_path_factory.mktemp("data")).ensure()
    write_tiny_esrgan(paths.models("upscaler"), ESRGAN)
    write_tiny_segmenter(paths.models("background") / BACKGROUND_FILE)
    return UpscalerRole(str(paths.root))


def upscale(seed: int, count: int, method: str = "esrgan", scale: int = 2) -> Upscale:
    """``count`` images to upscale; ``seed`` names them (as the outputs of step ``seed``)."""
    return Upscale(
        inputs=tuple(StepOutputs(seed, index) for index in range(count)), method=method, scale=scale,
        width=8 * scale, height=8 * scale, model=UPSCALE_FILES.get(method),
    )  # fmt: skip


def noise_inputs(step: Any) -> list[Image.Image]:
    """The images a step's sources stand for: noise seeded by the step and index they name."""
    return [
        Image.fromarray(np.random.default_rng(source.step * 1000 + source.index).integers(0, 256, (8, 8, 3), np.uint8))
        for source in step.sources
    ]


class TestUpscalerRoleContract(RoleContract):
    """Its "seed" is the input: the same images give the same pixels, others differ."""

    @pytest.fixture
    def model_id(self) -> str:
        return f"upscaler/{ESRGAN}"

    @pytest.fixture
    def make_step(self):  # noqa: ANN201
        return lambda seed, steps: upscale(seed, steps)

    @pytest.fixture
    def inputs_for(self):  # noqa: ANN201
        return noise_inputs

    def expected_outputs(self, step: Any) -> int:
        return len(step.inputs)


@pytest.mark.parametrize(("method", "scale"), [("esrgan", 2), ("esrgan", 4), ("lanczos", 4), ("nearest", 2)])
def test_outputs_are_scale_times_larger(role: UpscalerRole, method: str, scale: int) -> None:
    step = upscale(1, 2, method, scale)
    model = role.load(step.model_id)
    assert (model is None) == (method == "lanczos" or method == "nearest")
    outputs = pixels(run(role, model, step, noise_inputs(step)))
    assert [output.shape for output in outputs] == [(8 * scale, 8 * scale, 3)] * 2


def test_the_model_is_not_pillow(role: UpscalerRole) -> None:
    step, pillow = upscale(1, 1, "esrgan", 4), upscale(1, 1, "lanczos", 4)
    (model,) = pixels(run(role, role.load(step.model_id), step, noise_inputs(step)))
    (resized,) = pixels(run(role, None, pillow, noise_inputs(pillow)))
    assert np.abs(model.astype(int) - resized.astype(int)).mean() > 10


def test_background_removal_runs_the_segmenter(role: UpscalerRole) -> None:
    step = RemoveBackground(inputs=(StepOutputs(0, 0),))
    (cut,) = run(role, role.load(step.model_id), step, [red_square_on_blue()])[-1].images
    assert cut.mode == "RGBA" and cut.size == (96, 64)
    assert cut.getpixel((40, 32))[3] > 230 and cut.getpixel((4, 4))[3] < 25


def test_ids_outside_its_folders_are_refused(role: UpscalerRole) -> None:
    for model_id in ("checkpoint/x.safetensors", "upscaler/../../enfugue.duckdb", "background/missing.onnx"):
        with pytest.raises(BadRequestError):
            role.load(model_id)


def test_a_file_that_is_not_a_model_is_a_bad_request(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path).ensure()
    (paths.models("upscaler") / ESRGAN).write_bytes(b"not a model")
    with pytest.raises(BadRequestError, match="upscale: RealESRGAN_x4plus.pth is not an upscaling model"):
        UpscalerRole(str(paths.root)).load(f"upscaler/{ESRGAN}")


@pytest.mark.parametrize(("body", "size"), [({"outscale": 4}, 256), ({"outscale": 2, "upscale": "lanczos"}, 128)])
def test_upscales_through_the_api_on_real_roles(demo_data_dir: Path, body: dict, size: int) -> None:
    """The demo checkpoint on the Base role, then the tiny Real-ESRGAN file (or Pillow) on the Upscaler."""
    from deployments.base import BaseRole
    from tests.api.test_invocations import finished, invoke, output
    from tests.conftest import serve_locally

    write_tiny_esrgan(DataPaths(demo_data_dir).models("upscaler"), ESRGAN)
    roles = {"base": BaseRole(str(demo_data_dir)), "upscaler": UpscalerRole(str(demo_data_dir))}
    with serve_locally(demo_data_dir, roles=roles) as client:
        status = finished(client, invoke(client, {"num_inference_steps": 2, "seed": 1, **body})["uuid"])
        assert status["status"] == "completed", status
        image = output(client, status)
        assert image.size == (size, size)
        assert np.asarray(image).std() > 1  # an image, not a blank
