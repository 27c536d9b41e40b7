"""Inpainting on real diffusers pipelines from tiny random models: the base checkpoint (4-channel
UNet) and the Inpainter role's inpainting checkpoint (9-channel UNet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deployments.base import BaseRole, InpainterRole
from deployments.plan import make_plan
from deployments.request import Checkpoint, GenerationRequest, InputImage
from deployments.steps import Inpaint
from storage.files import DataPaths
from tests.deployments.role_contract import RoleContract, pixels, run
from tests.images import gradient, png_bytes
from tests.tiny_models import (
    tiny_sd15_inpaint_pipeline,
    tiny_sd15_pipeline,
    write_diffusers_folder,
    write_ldm_checkpoint,
)

INPAINTING = "tiny-inpainting.safetensors"


def encoded(image: Image.Image) -> InputImage:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return InputImage(buffer.getvalue(), *image.size)


def left_half_mask(size: int = 64) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (0, 0, size // 2, size))
    return mask


def inpaint(checkpoint: str, inpainter: str | None = None, **request: object) -> Inpaint:
    fields = {
        "image": InputImage(png_bytes(64, 64), 64, 64), "mask": encoded(left_half_mask()),
        "num_inference_steps": 3, "seed": 3, "scheduler": "ddim", **request,
    }  # fmt: skip
    inpainting = Checkpoint(inpainter, 64) if inpainter else None
    (step,) = make_plan(GenerationRequest(Checkpoint(checkpoint, 64), inpainter=inpainting, **fields), 0).steps  # type: ignore[arg-type]
    assert isinstance(step, Inpaint)
    return step


def inputs_of(step: Inpaint) -> list[Image.Image]:
    return step.prepare([source.open() for source in step.sources])  # type: ignore[union-attr]


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    paths = DataPaths(tmp_path).ensure()
    write_diffusers_folder(tiny_sd15_pipeline(), paths.models("checkpoint") / "tiny")
    write_ldm_checkpoint(tiny_sd15_inpaint_pipeline(), paths.models("checkpoint"), INPAINTING)
    return paths


class TestInpainterRoleContract(RoleContract):
    @pytest.fixture
    def role(self, paths: DataPaths) -> InpainterRole:
        return InpainterRole(str(paths.root))

    @pytest.fixture
    def model_id(self) -> str:
        return INPAINTING

    @pytest.fixture
    def make_step(self):  # noqa: ANN201
        return lambda seed, steps: inpaint("tiny", INPAINTING, seed=seed, num_inference_steps=steps)

    @pytest.fixture
    def inputs(self) -> list[Image.Image]:
        return inputs_of(inpaint("tiny", INPAINTING))


def _masked_changed_unmasked_kept(output: np.ndarray, source: np.ndarray, repainted: slice, kept: slice) -> None:
    assert np.abs(output[:, repainted].astype(int) - source[:, repainted].astype(int)).mean() > 10
    assert np.array_equal(output[:, kept], source[:, kept])


@pytest.mark.parametrize(
    ("role_class", "checkpoint", "inpainter"), [(BaseRole, "tiny", None), (InpainterRole, INPAINTING, INPAINTING)]
)
def test_masked_pixels_change_and_the_rest_stay(
    paths: DataPaths, role_class: type, checkpoint: str, inpainter: str | None
) -> None:
    role = role_class(str(paths.root))
    model = role.load(checkpoint)
    source = np.asarray(gradient(64, 64))
    step = inpaint("tiny", inpainter)
    (output,) = pixels(run(role, model, step, inputs_of(step)))
    _masked_changed_unmasked_kept(output, source, slice(0, 32), slice(32, 64))
    inverted = inpaint("tiny", inpainter, invert_mask=True)
    (output,) = pixels(run(role, model, inverted, inputs_of(inverted)))
    _masked_changed_unmasked_kept(output, source, slice(32, 64), slice(0, 32))


def test_the_base_refuses_an_inpainting_checkpoint_the_inpainter_takes(paths: DataPaths) -> None:
    from serve_app.errors import BadRequestError

    with pytest.raises(BadRequestError, match="cannot generate from text"):
        BaseRole(str(paths.root)).load(INPAINTING)
    assert InpainterRole(str(paths.root)).load("tiny") is not None  # any checkpoint can inpaint


def test_outpainting_fills_what_the_image_leaves_uncovered(paths: DataPaths) -> None:
    role = BaseRole(str(paths.root))
    image = encoded(gradient(64, 32))
    request = GenerationRequest(
        Checkpoint("tiny", 64), image=image, width=64, height=64, fit="actual", anchor="top-left",
        num_inference_steps=3, seed=1, scheduler="ddim",
    )  # fmt: skip
    (step,) = make_plan(request, 0).steps
    (output,) = pixels(run(role, role.load("tiny"), step, inputs_of(step)))  # type: ignore[arg-type]
    assert output.shape == (64, 64, 3)
    assert np.array_equal(output[:32], np.asarray(gradient(64, 32)))  # the image, kept
    assert np.abs(output[32:].astype(int) - 127).mean() > 5  # not the grey it started from
