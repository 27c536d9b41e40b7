"""Settings and canvas options that reach the plan: precision, safe, scale_to_model_size."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from storage.files import DataPaths
from tests.api.test_inpainting import run
from tests.api.test_invocations import error_of, finished, invoke, output
from tests.fake_role import write_fake_checkpoint

DEMO = "tiny-random-demo-noise-only"


def test_the_precision_setting_is_part_of_the_model_the_role_loads(local_app: TestClient) -> None:
    assert local_app.post("/api/settings", json={"precision": "full"}).status_code == 200
    _, step = run(local_app, {})
    assert step["precision"] == "full"
    assert local_app.role.loads[-1] == f"{DEMO}//precision=full"  # type: ignore[attr-defined]
    assert local_app.post("/api/settings", json={"precision": None}).status_code == 200
    _, step = run(local_app, {})
    assert step["precision"] is None and local_app.role.loads[-1] == DEMO  # type: ignore[attr-defined]


def test_the_safe_setting_has_the_last_step_checked(local_app: TestClient) -> None:
    assert local_app.post("/api/settings", json={"safe": False}).status_code == 200
    assert run(local_app, {})[1]["safe"] is False
    assert local_app.post("/api/settings", json={"safe": True}).status_code == 200
    assert run(local_app, {})[1]["safe"] is True


def test_scale_to_model_size_is_recorded_and_the_canvas_kept(local_app: TestClient, data_dir: Path) -> None:
    write_fake_checkpoint(DataPaths(data_dir).models("checkpoint") / "large", size=128)
    body = {"model": "large", "width": 64, "height": 96, "scale_to_model_size": True, "num_inference_steps": 2}
    status = finished(local_app, invoke(local_app, body)["uuid"])
    image = output(local_app, status)
    step = json.loads(image.text["plan"])["steps"][0]
    assert image.size == (64, 96) and step["model_size"] == 128
    assert run(local_app, {"model": "large", "width": 64, "height": 96})[1]["model_size"] is None


def test_chunking_is_recorded_and_checked(local_app: TestClient) -> None:
    body = {"width": 128, "height": 64, "chunking_size": 16, "chunking_blur": 8, "multi_scheduler": "ddim"}
    _, step = run(local_app, body)
    assert (step["window"], step["chunking_size"], step["chunking_blur"], step["multi_scheduler"]) == (
        64,
        16,
        8,
        "ddim",
    )
    _, step = run(local_app, {"width": 128, "height": 64})
    assert (step["chunking_size"], step["chunking_blur"]) == (8, 8)  # an eighth of the model's size
    detail = error_of(local_app.post("/api/invoke", json={"chunking_size": 12}), 400)
    assert "chunking_size: must be a multiple of 8" in detail
    assert "chunking_size: 72 px is more than the model's size, 64" in error_of(
        local_app.post("/api/invoke", json={"chunking_size": 72}), 400
    )


def test_inpainter_size_is_the_size_the_inpainter_scales_to(local_app: TestClient, data_dir: Path) -> None:
    from tests.images import data_uri, gradient

    write_fake_checkpoint(DataPaths(data_dir).models("checkpoint") / "inpainting")
    body = {
        "model": DEMO, "image": data_uri(gradient(64, 64)), "inpainter": "inpainting", "inpainter_size": 128,
        "scale_to_model_size": True, "width": 64, "height": 96, "fit": "contain",
    }  # fmt: skip
    _, step = run(local_app, body)
    assert (step["kind"], step["checkpoint"], step["model_size"]) == ("inpaint", "inpainting", 128)
