"""Upscaling passes and background removal in the plan: counts, scales, per-pass values, order."""

from __future__ import annotations

import pytest

from deployments.image_steps import RemoveBackground, Upscale
from deployments.plan import make_plan
from deployments.request import Checkpoint, GenerationRequest, InputImage, Upscaling
from deployments.steps import Diffuse, EachOutput, Inpaint, Refine, StepOutputs
from deployments.upscale_plan import pass_scales, per_pass
from serve_app.errors import BadRequestError
from tests.images import png_bytes

DEMO = Checkpoint(name="demo", size=64)


def plan(**request: object):  # noqa: ANN201
    return make_plan(GenerationRequest(DEMO, width=64, height=64, samples=2, **request), 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("outscale", "iterative", "scales"),
    [(1, False, []), (1, True, []), (2, False, [2]), (2, True, [2]), (4, False, [4]), (4, True, [2, 2]),
     (8, False, [8]), (8, True, [2, 2, 2]), (16, False, [16]), (16, True, [2, 2, 2, 2])],
)  # fmt: skip
def test_the_passes_of_every_outscale(outscale: int, iterative: bool, scales: list[int]) -> None:
    assert pass_scales(outscale, iterative) == scales
    if outscale > 1:
        steps = plan(upscale=Upscaling(outscale, iterative, ("lanczos",))).steps
        upscales = [step for step in steps if isinstance(step, Upscale)]
        assert [step.scale for step in upscales] == scales
        assert (upscales[-1].width, upscales[-1].height) == (64 * outscale, 64 * outscale)


def test_a_shorter_list_repeats_its_last_value() -> None:
    assert [per_pass((1, 2), index, 0) for index in range(4)] == [1, 2, 2, 2]
    assert per_pass((), 3, "default") == "default"


def test_each_pass_reads_the_one_before_and_rediffuses_every_sample() -> None:
    upscaling = Upscaling(
        8, iterative=True, methods=("esrgan", "lanczos"), diffusion=True, steps=(10, 20),
        guidance_scale=(5.0,), strength=(0.3, 0.2, 0.1), prompts=("sharp",),
    )  # fmt: skip
    steps = plan(prompt="a cat", upscale=upscaling).steps
    assert [step.kind for step in steps] == ["diffuse"] + ["upscale", "diffuse"] * 3
    for index in range(3):
        up, again = steps[1 + 2 * index], steps[2 + 2 * index]
        assert isinstance(up, Upscale) and isinstance(again, Diffuse)
        assert up.inputs == (StepOutputs(2 * index, 0), StepOutputs(2 * index, 1))
        assert up.method == ("esrgan", "lanczos", "lanczos")[index]
        assert up.model == ("RealESRGAN_x4plus.pth", None, None)[index]
        assert again.source == EachOutput(1 + 2 * index) and again.per_image
        assert again.sources == (StepOutputs(1 + 2 * index, 0), StepOutputs(1 + 2 * index, 1))
        assert (again.num_inference_steps, again.guidance_scale, again.strength) == (
            (10, 20, 20)[index],
            5.0,
            (0.3, 0.2, 0.1)[index],
        )
        assert again.prompt == "sharp" and again.seeds == steps[0].seeds
        assert again.size == (64 * 2 ** (index + 1),) * 2
    recorded = steps[2].to_dict()
    assert recorded["source"] == {"step": 1, "each": True} and recorded["num_inference_steps"] == 10


def test_the_refiner_runs_before_the_upscale_and_the_checker_after_the_last_painting() -> None:
    steps = plan(
        refiner=Checkpoint("refiner", 64), safe=True,
        upscale=Upscaling(2, methods=("lanczos",), diffusion=True),
    ).steps  # fmt: skip
    assert [type(step) for step in steps] == [Diffuse, Refine, Upscale, Diffuse]
    assert [step.safe for step in steps] == [False, False, False, True]
    assert steps[2].inputs == (StepOutputs(1, 0), StepOutputs(1, 1))
    steps = plan(safe=True, upscale=Upscaling(2, methods=("lanczos",))).steps
    assert [step.safe for step in steps] == [True, False]


def test_background_removal_of_the_input_or_of_the_outputs() -> None:
    image = InputImage(png_bytes(64, 64), 64, 64)
    steps = plan(image=image, remove_background=True).steps
    assert [type(step) for step in steps] == [RemoveBackground, Diffuse]
    assert steps[0].inputs == (image,) and steps[1].source == StepOutputs(0, 0)
    steps = plan(image=image, remove_background=True, fill_background=True).steps
    assert [type(step) for step in steps] == [RemoveBackground, Inpaint]
    assert steps[1].source == StepOutputs(0, 0) and steps[1].mask is None  # transparent is repainted
    steps = plan(remove_background=True, upscale=Upscaling(2, methods=("nearest",))).steps
    assert [type(step) for step in steps] == [Diffuse, RemoveBackground, Upscale]
    assert steps[1].inputs == (StepOutputs(0, 0), StepOutputs(0, 1))
    assert steps[1].to_dict()["inputs"] == [{"step": 0, "index": 0}, {"step": 0, "index": 1}]


def test_chunking_defaults_to_an_eighth_of_the_model_and_only_text_and_image_steps_take_it() -> None:
    step = make_plan(GenerationRequest(Checkpoint("c", 512), width=1024, height=512), 0).steps[0]
    assert (step.window, step.chunking_size, step.chunking_blur, step.chunked) == (512, 64, 64, True)
    step = make_plan(GenerationRequest(Checkpoint("c", 512), width=1024, height=512, chunking_size=0), 0).steps[0]
    assert not step.chunked
    step = make_plan(GenerationRequest(Checkpoint("c", 512), size=256, multi_scheduler="ddim"), 0).steps[0]
    assert (step.size, step.window, step.chunking_size, step.multi_scheduler) == ((256, 256), 256, 32, "ddim")
    assert not step.chunked  # the canvas is the model's size
    with pytest.raises(BadRequestError, match="chunking_size: 600 px is more than the model's size, 512"):
        make_plan(GenerationRequest(Checkpoint("c", 512), chunking_size=600), 0)


def test_rediffusion_chunking_doubles_every_pass_up_to_half_the_model() -> None:
    upscaling = Upscaling(16, iterative=True, methods=("nearest",), diffusion=True, chunking_size=16)
    steps = plan(upscale=upscaling, chunking_blur=8).steps
    again = [step for step in steps[1:] if isinstance(step, Diffuse)]
    assert [step.chunking_size for step in again] == [16, 32, 32, 32]  # half of 64
    assert [step.chunking_blur for step in again] == [8, 16, 32, 32]
    fixed = Upscaling(4, iterative=True, methods=("nearest",), diffusion=True, scale_chunking_size=False)
    assert [step.chunking_size for step in plan(upscale=fixed).steps if isinstance(step, Diffuse)][1:] == [8, 8]


def test_a_passs_controlnet_reads_each_upscaled_image_as_its_control_image() -> None:
    from PIL import Image

    upscaling = Upscaling(4, True, ("nearest",), diffusion=True, controlnets=(("tile", "tile.safetensors"),))
    diffuse, first, pass_one, second, pass_two = plan(upscale=upscaling).steps
    assert isinstance(first, Upscale) and isinstance(second, Upscale)
    for step, upscaled in ((pass_one, 1), (pass_two, 3)):
        assert isinstance(step, Diffuse)
        assert (step.controlnet, step.controlnet_model, step.control) == (
            "tile",
            "tile.safetensors",
            EachOutput(upscaled),
        )
        assert step.sources == (StepOutputs(upscaled, 0), StepOutputs(upscaled, 1)) and step.control_count == 2
        assert step.model_id == "demo//controlnet=tile.safetensors"
    images = [Image.new("RGB", (256, 256), colour) for colour in ("red", "blue")]
    prepared = pass_two.prepare(list(images))  # type: ignore[union-attr]
    assert [image.getpixel((0, 0)) for image in prepared] == [(255, 0, 0), (0, 0, 255)] * 2
    assert diffuse.controlnet is None
