"""The refiner through the API (fake role, which returns the negatives of what it refines)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from storage.files import DataPaths
from tests.api.test_invocations import error_of, finished, invoke, output
from tests.fake_role import colour, write_fake_checkpoint

DEMO = "tiny-random-demo-noise-only"


@pytest.fixture
def refiner(data_dir: Path) -> str:
    write_fake_checkpoint(DataPaths(data_dir).models("checkpoint") / "refiner", size=128)
    return "refiner"


def test_every_output_is_refined_in_the_refiner_role(local_app: TestClient, refiner: str) -> None:
    body = {
        "model": DEMO, "refiner": refiner, "samples": 2, "seed": 7, "num_inference_steps": 10,
        "refiner_strength": 0.5, "refiner_guidance_scale": 3, "refiner_aesthetic_score": 7,
        "refiner_negative_aesthetic_score": 1,
    }  # fmt: skip
    status = finished(local_app, invoke(local_app, body)["uuid"])
    assert status["status"] == "completed" and status["total"] == 10 + 5, status
    for index, seed in enumerate((7, 8)):
        refined = np.asarray(output(local_app, status, index))
        assert (refined == 255 - np.array(colour(seed))).all()  # the negative of sample i's image
    steps = local_app.role.steps[-2:]  # type: ignore[attr-defined]
    assert [(step.kind, step.role, step.checkpoint) for step in steps] == [
        ("diffuse", "base", DEMO), ("refine", "refiner", "refiner"),
    ]  # fmt: skip
    refine = steps[1]
    assert (refine.strength, refine.guidance_scale, refine.aesthetic_score, refine.negative_aesthetic_score) == (
        0.5, 3, 7, 1,
    )  # fmt: skip


def test_a_preconfigured_models_refiner_and_its_defaults_apply(local_app: TestClient, refiner: str) -> None:
    model = {"name": "refined", "checkpoint": DEMO, "refiner": refiner, "refiner_strength": 0.4}
    assert local_app.post("/api/models", json=model).status_code == 200
    status = finished(local_app, invoke(local_app, {"model": "refined", "num_inference_steps": 10})["uuid"])
    assert status["status"] == "completed", status
    refine = local_app.role.steps[-1]  # type: ignore[attr-defined]
    assert (refine.kind, refine.checkpoint, refine.strength, refine.guidance_scale) == ("refine", refiner, 0.4, 5.0)
    # refiner_strength 0: no refining.
    body = {"model": "refined", "num_inference_steps": 10, "refiner_strength": 0}
    assert finished(local_app, invoke(local_app, body)["uuid"])["total"] == 10
    assert local_app.role.steps[-1].kind == "diffuse"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"refiner": "nope"}, "refiner: no checkpoint file named 'nope'"),
        (
            {"refiner": "REFINER", "refiner_strength": 0.01},
            "refiner_strength: 0.01 x num_inference_steps 40 leaves no step",
        ),
        ({"refiner_aesthetic_score": 11}, "refiner_aesthetic_score: Input should be less than or equal to 10"),
        ({"refiner": "REFINER", "refiner_size": 100}, "refiner_size: must be a multiple of 8"),
    ],
)
def test_bad_refiner_requests_name_the_field(local_app: TestClient, refiner: str, body: dict, detail: str) -> None:
    body = {"model": DEMO, **{key: refiner if value == "REFINER" else value for key, value in body.items()}}
    assert detail in error_of(local_app.post("/api/invoke", json=body), 400)
