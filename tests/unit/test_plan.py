"""Plan expansion: pure data, no Ray, no torch."""

from __future__ import annotations

from deployments.plan import Checkpoint, make_plan
from serve_app.schemas import InvokeRequest
from tests.images import data_uri, gradient

DEMO = Checkpoint(name="demo", size=512)


def test_defaults_come_from_the_checkpoint_and_the_seed_is_recorded() -> None:
    plan = make_plan(InvokeRequest(prompt="a cat"), DEMO, random_seed=99)
    (step,) = plan.steps
    assert (step.width, step.height) == (512, 512)
    assert plan.seed == 99 and step.seeds == (99,)
    assert step.image is None and step.strength is None
    assert plan.to_dict()["seed"] == 99


def test_samples_get_consecutive_seeds() -> None:
    plan = make_plan(InvokeRequest(seed=10, samples=3), DEMO, random_seed=0)
    assert plan.steps[0].seeds == (10, 11, 12)


def test_img2img_takes_its_size_from_the_image_and_counts_strength_steps() -> None:
    request = InvokeRequest(image=data_uri(gradient(64, 48)), strength=0.5, num_inference_steps=10)
    plan = make_plan(request, DEMO, random_seed=0)
    (step,) = plan.steps
    assert (step.width, step.height) == (64, 48)
    assert step.expected_steps == 5
    assert plan.to_dict()["steps"][0]["image"] == {"width": 64, "height": 48}


def test_second_order_schedulers_report_two_evaluations_per_step() -> None:
    assert make_plan(InvokeRequest(num_inference_steps=10, scheduler="heun"), DEMO, 0).expected_steps == 19
    assert make_plan(InvokeRequest(num_inference_steps=10, scheduler="ddim"), DEMO, 0).expected_steps == 10


def test_the_plan_is_json_serialisable() -> None:
    import json

    plan = make_plan(InvokeRequest(image=data_uri(gradient(64, 64))), DEMO, 0)
    assert json.loads(json.dumps(plan.to_dict()))["steps"][0]["checkpoint"] == "demo"
