"""ControlNet on the Base role, real pipelines with a tiny ControlNet: its weight, its image and
its file layouts count; text-to-image, image-to-image and inpainting all take it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from deployments.base import BaseRole
from deployments.plan import make_plan
from deployments.request import Checkpoint, ControlNet, GenerationRequest, InputImage
from deployments.steps import Diffuse, Inpaint
from storage.files import DataPaths
from tests.deployments.role_contract import pixels, run
from tests.deployments.test_inpainting import encoded, left_half_mask
from tests.tiny_models import tiny_controlnet, tiny_sd15_pipeline, write_diffusers_folder, write_tiny_controlnet


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> DataPaths:
    paths = DataPaths(tmp_path_factory.mktemp("data")).ensure()
    write_diffusers_folder(tiny_sd15_pipeline(), paths.models("checkpoint") / "tiny")
    controlnet = tiny_controlnet()
    write_tiny_controlnet(paths.models("controlnet") / "tiny-canny", controlnet)
    write_tiny_controlnet(paths.models("controlnet") / "tiny-canny.safetensors", controlnet)
    return paths


@pytest.fixture(scope="module")
def role(paths: DataPaths) -> BaseRole:
    return BaseRole(str(paths.root))


def shape(offset: int = 0) -> InputImage:
    image = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(image).ellipse((8 + offset, 8, 40 + offset, 56), fill="white")
    return encoded(image)


def generate(
    role: BaseRole,
    scale: float | None = 1.0,
    model: str = "tiny-canny",
    control: InputImage | None = None,
    **request: object,
) -> np.ndarray:
    controlnet = ControlNet("canny", model, control or shape(), scale=scale) if scale is not None else None
    fields = {"num_inference_steps": 3, "seed": 5, "scheduler": "ddim", "width": 64, "height": 64, **request}
    (step,) = make_plan(GenerationRequest(Checkpoint("tiny", 64), controlnet=controlnet, **fields), 0).steps  # type: ignore[arg-type]
    inputs = step.prepare([source.open() for source in step.sources])  # type: ignore[union-attr]
    return pixels(run(role, role.load(step.model_id), step, inputs))[0].astype(int)


def test_the_conditioning_scale_and_the_control_image_count(role: BaseRole) -> None:
    plain = generate(role, scale=None)
    controlled = generate(role, scale=1.0)
    assert np.abs(controlled - plain).mean() > 1
    assert np.array_equal(generate(role, scale=0.0), plain)  # weight 0: no effect
    # The tiny ControlNet reads its image weakly next to its random residuals: small, not zero.
    assert np.abs(controlled - generate(role, scale=1.0, control=shape(offset=16))).mean() > 0.02


def test_a_single_file_controlnet_loads_like_its_folder(role: BaseRole) -> None:
    assert np.array_equal(generate(role), generate(role, model="tiny-canny.safetensors"))


def test_image_to_image_and_inpainting_take_a_controlnet(role: BaseRole) -> None:
    image = encoded(Image.new("RGB", (64, 64), (90, 120, 200)))
    assert generate(role, image=image, strength=0.9).shape == (64, 64, 3)
    inpainted = generate(role, image=image, mask=encoded(left_half_mask()))
    assert (inpainted[:, 32:] == (90, 120, 200)).all()  # outside the mask: kept
    assert np.abs(inpainted[:, :32] - (90, 120, 200)).mean() > 5


def test_the_controlnet_is_part_of_the_loaded_model(role: BaseRole) -> None:
    step = make_plan(
        GenerationRequest(Checkpoint("tiny", 64), controlnet=ControlNet("canny", "tiny-canny", shape())), 0
    ).steps[0]
    assert isinstance(step, Diffuse | Inpaint) and step.model_id == "tiny//controlnet=tiny-canny"
    assert role.load(step.model_id).controlnet is not None and role.load("tiny").controlnet is None


class RecordingRole(BaseRole):
    """The Base role, recording each step's inputs and the control images its ControlNet received."""

    def __init__(self, data_dir: str) -> None:
        super().__init__(data_dir)
        self.inputs: list[tuple[object, list[Image.Image]]] = []
        self.conditions: list[torch.Tensor] = []

    def load(self, model_id: str):  # noqa: ANN201 - as the base class
        loaded = super().load(model_id)
        if loaded.controlnet is not None:

            def record(module: object, args: tuple, kwargs: dict) -> None:
                self.conditions.append(kwargs["controlnet_cond"].detach().float().cpu())

            loaded.controlnet.register_forward_pre_hook(record, with_kwargs=True)
        return loaded

    def run(self, loaded, step, inputs, reporter):  # noqa: ANN001, ANN201 - as the base class
        self.inputs.append((step, list(inputs)))
        return super().run(loaded, step, inputs, reporter)


def test_each_upscaling_pass_runs_its_controlnet_on_its_own_input(tmp_path_factory: pytest.TempPathFactory) -> None:
    from deployments.demo import DEMO_CHECKPOINT_NAME, write_demo_checkpoint
    from deployments.upscaler import UpscalerRole
    from tests.api.test_upscale import completed
    from tests.conftest import serve_locally

    paths = DataPaths(tmp_path_factory.mktemp("passes")).ensure()
    write_demo_checkpoint(paths.models("checkpoint"))
    write_tiny_controlnet(paths.models("controlnet") / "control_v11f1e_sd15_tile.bin", tiny_controlnet())
    base = RecordingRole(str(paths.root))
    body = {
        "model": DEMO_CHECKPOINT_NAME, "width": 64, "height": 64, "samples": 2, "outscale": 4, "upscale": "nearest",
        "upscale_iterative": True, "upscale_diffusion": True, "upscale_diffusion_controlnet": ["tile"],
        "upscale_diffusion_steps": 2, "upscale_diffusion_strength": 0.5,
    }  # fmt: skip
    with serve_locally(paths.root, roles={"base": base, "upscaler": UpscalerRole(str(paths.root))}) as client:
        images, steps = completed(client, body)
    assert [image.size for image in images] == [(256, 256)] * 2
    assert [step["kind"] for step in steps] == ["diffuse", "upscale", "diffuse", "upscale", "diffuse"]
    assert [step["controlnet"] for step in steps[::2]] == [None, "tile", "tile"]
    passes = [(step, inputs) for step, inputs in base.inputs if step.controlnet == "tile"]  # type: ignore[attr-defined]
    assert [inputs[0].size for _, inputs in passes] == [(128, 128), (256, 256)]
    for _, inputs in passes:  # two samples: their upscaled images, then the same two as control images
        sources, controls = inputs[:2], inputs[2:]
        assert [np.asarray(c).tolist() for c in controls] == [np.asarray(s).tolist() for s in sources]
    # What the ControlNet received (diffusers' [0, 1] tensor, the batch doubled for guidance): the inputs.
    received = {tuple(condition.shape[-2:]): condition for condition in base.conditions}
    for _, inputs in passes:
        condition = received[inputs[0].size[::-1]]
        expected = torch.stack([torch.from_numpy(np.asarray(image) / 255.0).permute(2, 0, 1) for image in inputs[2:]])
        assert torch.allclose(condition[:2], expected.float(), atol=1 / 255 + 1e-4)
