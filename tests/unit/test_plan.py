"""Plan expansion: pure data, no Ray, no torch."""

from __future__ import annotations

import json

import pytest

from deployments.plan import make_plan
from deployments.request import Checkpoint, GenerationRequest, InputImage
from deployments.steps import Diffuse, Inpaint, ModelKey, Refine, StepOutputs
from serve_app.errors import BadRequestError
from tests.images import png_bytes

DEMO = Checkpoint(name="demo", size=512)


def image(width: int, height: int) -> InputImage:
    return InputImage(png_bytes(width, height), width, height)


def test_defaults_come_from_the_checkpoint_and_the_seed_is_recorded() -> None:
    plan = make_plan(GenerationRequest(DEMO, prompt="a cat"), random_seed=99)
    (step,) = plan.steps
    assert isinstance(step, Diffuse) and step.role == "base" and step.model_id == "demo"
    assert (step.width, step.height) == (512, 512)
    assert plan.seed == 99 and step.seeds == (99,)
    assert step.source is None and step.strength is None
    assert plan.to_dict()["seed"] == 99 and plan.roles == {"base"}


def test_samples_get_consecutive_seeds() -> None:
    plan = make_plan(GenerationRequest(DEMO, seed=10, samples=3), random_seed=0)
    assert plan.steps[0].seeds == (10, 11, 12)


def test_img2img_takes_its_size_from_the_image_and_counts_strength_steps() -> None:
    request = GenerationRequest(DEMO, image=image(64, 48), strength=0.5, num_inference_steps=10)
    plan = make_plan(request, random_seed=0)
    (step,) = plan.steps
    assert (step.width, step.height) == (64, 48)
    assert step.expected_steps == 5
    assert plan.to_dict()["steps"][0]["source"] == {"width": 64, "height": 48}
    assert step.source.open().size == (64, 48)


def test_second_order_schedulers_report_two_evaluations_per_step() -> None:
    assert make_plan(GenerationRequest(DEMO, num_inference_steps=10, scheduler="heun"), 0).expected_steps == 19
    assert make_plan(GenerationRequest(DEMO, num_inference_steps=10, scheduler="ddim"), 0).expected_steps == 10


def test_the_plan_is_json_serialisable() -> None:
    request = GenerationRequest(DEMO, image=image(64, 64))
    step = json.loads(json.dumps(make_plan(request, 0).to_dict()))["steps"][0]
    assert (step["kind"], step["role"], step["checkpoint"]) == ("diffuse", "base", "demo")
    assert step["source"] == {"width": 64, "height": 64}


def test_a_mask_makes_an_inpaint_step_on_the_base_without_an_inpainter() -> None:
    request = GenerationRequest(DEMO, image=image(64, 64), mask=image(64, 64), num_inference_steps=10)
    (step,) = make_plan(request, 0).steps
    assert isinstance(step, Inpaint) and (step.role, step.model_id) == ("base", "demo")
    assert step.expected_steps == 10 and len(step.sources) == 2  # the whole schedule, image and mask
    assert (
        make_plan(GenerationRequest(DEMO, image=image(64, 64), mask=image(64, 64), strength=0.5), 0).expected_steps
        == 20
    )


def test_the_inpainter_runs_inpainting_in_its_own_role() -> None:
    inpainter = Checkpoint("inpainting.safetensors", 512)
    request = GenerationRequest(DEMO, image=image(64, 64), mask=image(64, 64), inpainter=inpainter)
    plan = make_plan(request, 0)
    assert plan.roles == {"inpainter"} and plan.steps[0].model_id == "inpainting.safetensors"
    recorded = plan.to_dict()["steps"][0]
    assert (recorded["kind"], recorded["role"], recorded["mask"]) == (
        "inpaint",
        "inpainter",
        {"width": 64, "height": 64},
    )
    # Without a mask, an image that covers the canvas is image-to-image on the base.
    assert make_plan(GenerationRequest(DEMO, image=image(64, 64), inpainter=inpainter), 0).roles == {"base"}


def test_an_image_that_leaves_the_canvas_uncovered_is_outpainted() -> None:
    covering = GenerationRequest(DEMO, image=image(64, 32), width=64, height=64, fit="cover")
    (step,) = make_plan(covering, 0).steps
    assert isinstance(step, Diffuse) and step.strength == 0.8 and step.fit == "cover"
    contained = GenerationRequest(DEMO, image=image(64, 32), width=64, height=64, fit="contain", anchor="top-left")
    (step,) = make_plan(contained, 0).steps
    assert isinstance(step, Inpaint) and step.mask is None
    fitted, repaint = step.prepare([step.source.open()])
    assert fitted.size == (64, 64) and repaint.getbbox() == (0, 32, 64, 64)


def test_a_refiner_refines_every_output_after_the_first_step() -> None:
    request = GenerationRequest(DEMO, samples=2, num_inference_steps=10, refiner=Checkpoint("refiner", 1024))
    plan = make_plan(request, random_seed=5)
    first, refine = plan.steps
    assert isinstance(refine, Refine) and (refine.role, refine.model_id, refine.seeds) == ("refiner", "refiner", (5, 6))
    assert refine.sources == (StepOutputs(0, 0), StepOutputs(0, 1)) and refine.strength == 0.3
    assert (refine.guidance_scale, refine.aesthetic_score, refine.negative_aesthetic_score) == (5.0, 6.0, 2.5)
    assert plan.expected_steps == 10 + 3 and plan.roles == {"base", "refiner"}
    recorded = plan.to_dict()["steps"][1]
    assert (recorded["kind"], recorded["after"], recorded["strength"]) == ("refine", 0, 0.3)


def test_refiner_strength_zero_is_no_refining_and_too_little_is_an_error() -> None:
    refiner = Checkpoint("refiner", 1024)
    assert len(make_plan(GenerationRequest(DEMO, refiner=refiner, refiner_strength=0.0), 0).steps) == 1
    with pytest.raises(BadRequestError, match="refiner_strength: 0.01 x num_inference_steps 40 leaves no step"):
        make_plan(GenerationRequest(DEMO, refiner=refiner, refiner_strength=0.01), 0)


def test_scale_to_model_size_scales_the_smaller_side_up_to_the_models_size() -> None:
    def step(width: int, height: int, scale: bool = True) -> Diffuse:
        request = GenerationRequest(Checkpoint("c", 512), width=width, height=height, scale_to_model_size=scale)
        return make_plan(request, 0).steps[0]  # type: ignore[return-value]

    assert step(256, 128).diffusion_size == (1024, 512)
    assert step(200, 300).diffusion_size == (512, 768)
    assert step(512, 768).diffusion_size == (512, 768)  # already at the model's size
    assert step(256, 128, scale=False).diffusion_size == (256, 128)
    assert step(256, 128).to_dict()["model_size"] == 512


def test_precision_is_part_of_the_model_id_and_the_refiner_shares_it() -> None:
    request = GenerationRequest(Checkpoint("c", 64), precision="full", refiner=Checkpoint("r", 64))
    base, refine = make_plan(request, 0).steps
    assert ModelKey.decode(base.model_id) == ModelKey("c", precision="full")
    assert ModelKey.decode(refine.model_id) == ModelKey("r", precision="full")
    assert make_plan(GenerationRequest(Checkpoint("c", 64)), 0).steps[0].model_id == "c"


def test_only_the_last_step_is_checked_by_the_safety_checker() -> None:
    request = GenerationRequest(Checkpoint("c", 64), safe=True, refiner=Checkpoint("r", 64))
    assert [step.safe for step in make_plan(request, 0).steps] == [False, True]
    assert not make_plan(GenerationRequest(Checkpoint("c", 64)), 0).steps[0].safe
