"""Upscaling and background removal through the API (fake role): the plan's passes, the sizes of
the outputs, and a 400 naming the file or the value when something is missing or wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from storage.files import DataPaths
from tests.api.test_invocations import error_of, finished, invoke, output
from tests.images import data_uri


def completed(client: TestClient, body: dict) -> tuple[list[Image.Image], list[dict]]:
    status = finished(client, invoke(client, {"num_inference_steps": 2, "seed": 3, **body})["uuid"])
    assert status["status"] == "completed", status
    images = [output(client, status, index) for index in range(len(status["images"]))]
    return images, json.loads(images[0].text["plan"])["steps"]


def test_a_pillow_upscale_returns_outscale_times_the_canvas(local_app: TestClient) -> None:
    images, steps = completed(local_app, {"outscale": 2, "upscale": "lanczos", "samples": 2})
    assert [image.size for image in images] == [(128, 128)] * 2
    assert [step["kind"] for step in steps] == ["diffuse", "upscale"]
    assert steps[1]["method"] == "lanczos" and steps[1]["model"] is None and steps[1]["role"] == "upscaler"


def test_an_iterative_upscale_with_rediffusion_records_every_pass(local_app: TestClient) -> None:
    body = {
        "prompt": "a cat", "outscale": 4, "upscale_iterative": True, "upscale": ["nearest", "bicubic"],
        "upscale_diffusion": True, "upscale_diffusion_steps": [3, 4], "upscale_diffusion_strength": 0.5,
        "upscale_diffusion_prompt": ["sharp", "sharper"], "upscale_diffusion_guidance_scale": [9],
    }  # fmt: skip
    (image,), steps = completed(local_app, body)
    assert image.size == (256, 256)
    assert [step["kind"] for step in steps] == ["diffuse", "upscale", "diffuse", "upscale", "diffuse"]
    passes = [(step["method"], step["scale"]) for step in steps if step["kind"] == "upscale"]
    assert passes == [("nearest", 2), ("bicubic", 2)]
    again = [step for step in steps[1:] if step["kind"] == "diffuse"]
    assert [(s["num_inference_steps"], s["strength"], s["prompt"], s["guidance_scale"]) for s in again] == [
        (3, 0.5, "sharp", 9.0),
        (4, 0.5, "sharper", 9.0),
    ]
    assert [(s["width"], s["source"]) for s in again] == [
        (128, {"step": 1, "each": True}),
        (256, {"step": 3, "each": True}),
    ]


def test_model_methods_need_their_file(local_app: TestClient, data_dir: Path) -> None:
    detail = error_of(local_app.post("/api/invoke", json={"outscale": 2}), 400)
    assert "upscale: esrgan needs the file RealESRGAN_x4plus.pth in the upscaler folder" in detail
    detail = error_of(local_app.post("/api/invoke", json={"outscale": 2, "upscale": "esrganime"}), 400)
    assert "RealESRGAN_x4plus_anime_6B.pth" in detail
    gfpgan = {"outscale": 2, "upscale": "gfpgan"}
    for name in ("GFPGANv1.4.pth", "face_detection_yunet_2023mar.onnx", "RealESRGAN_x4plus.pth"):
        assert f"upscale: gfpgan needs the file {name} in the upscaler folder" in error_of(
            local_app.post("/api/invoke", json=gfpgan), 400
        )
        (DataPaths(data_dir).models("upscaler") / name).write_bytes(b"")
    _, steps = completed(local_app, gfpgan)
    assert (steps[1]["method"], steps[1]["model"]) == ("gfpgan", "GFPGANv1.4.pth")
    (DataPaths(data_dir).models("upscaler") / "RealESRGAN_x4plus.pth").write_bytes(b"")
    (image,), steps = completed(local_app, {"outscale": 4})
    assert image.size == (256, 256) and steps[1]["model"] == "RealESRGAN_x4plus.pth"
    assert local_app.role.loads[-1] == "upscaler/RealESRGAN_x4plus.pth"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"outscale": 3}, "outscale: Input should be 1, 2, 4, 8 or 16"),
        ({"upscale": "lanczos"}, "upscale: applies to upscaling; pass outscale 2, 4, 8 or 16"),
        ({"outscale": 2, "upscale": "box"}, "upscale"),
        ({"outscale": 2, "upscale_diffusion_steps": 5}, "upscale_diffusion_steps: applies to re-diffusing"),
        ({"outscale": 2, "upscale": ["lanczos", "nearest"]}, "upscale: 2 values for 1 upscaling pass(es)"),
        ({"outscale": 16, "upscale": "nearest", "width": 1088, "height": 64}, "outscale: the upscaled images would be"),
        ({"fill_background": True}, "fill_background: needs remove_background true and an `image`"),
    ],
)
def test_bad_upscale_values_are_refused_by_name(local_app: TestClient, body: dict, detail: str) -> None:
    assert detail in error_of(local_app.post("/api/invoke", json=body), 400)


# Re-diffusion passes a role would refuse (no step left after strength, windows apart by more than
# the model's size): 400 at admission naming the pass's field, not an error after the queue.
_TWO_PASSES = {
    "prompt": "x", "width": 64, "height": 64, "num_inference_steps": 2, "outscale": 4,
    "upscale": ["lanczos", "bicubic"], "upscale_iterative": True, "upscale_diffusion": True,
}  # fmt: skip


_NO_STEP = "leaves no step to run in upscaling pass"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            {
                "upscale_diffusion_steps": [2],
                "upscale_diffusion_strength": [0.2, 0.1],
                "upscale_diffusion_chunking_size": 32,
            },
            f"upscale_diffusion_strength[0]: 0.2 x upscale_diffusion_steps 2 {_NO_STEP} 1 of 2; raise either",
        ),
        (
            {"upscale_diffusion_steps": [2]},
            f"upscale_diffusion_strength: 0.2 x upscale_diffusion_steps 2 {_NO_STEP} 1 of 2",
        ),
        (
            {"upscale_diffusion_steps": [1], "upscale_diffusion_strength": [0.1]},
            f"upscale_diffusion_strength: 0.1 x upscale_diffusion_steps 1 {_NO_STEP} 1 of 2",
        ),
        (
            {"upscale_diffusion_steps": [10, 2], "upscale_diffusion_strength": [0.5, 0.3]},
            f"upscale_diffusion_strength[1]: 0.3 x upscale_diffusion_steps[1] 2 {_NO_STEP} 2 of 2",
        ),
        (
            {"upscale_diffusion_steps": 4, "upscale_diffusion_strength": 0.5, "upscale_diffusion_chunking_size": 1024},
            "upscale_diffusion_chunking_size: 1024 px in upscaling pass 1 of 2 is more than the model's size, 64",
        ),
    ],
)
def test_rediffusion_a_role_would_refuse_is_a_400(local_app: TestClient, body: dict, detail: str) -> None:
    assert detail in error_of(local_app.post("/api/invoke", json={**_TWO_PASSES, **body}), 400)
    assert local_app.get("/api/invocation-history").json()["meta"]["count"] == 0  # withdrawn, not queued


def test_a_node_whose_strength_leaves_no_step_is_refused_by_its_index(local_app: TestClient) -> None:
    image = data_uri(Image.new("RGB", (64, 64), "red"))
    nodes = [
        {"x": 0, "y": 0, "w": 64, "h": 64, "prompt": "a"},
        {"x": 64, "y": 0, "w": 64, "h": 64, "image": image, "strength": 0.2, "num_inference_steps": 4},
    ]
    detail = error_of(local_app.post("/api/invoke", json={"width": 128, "height": 64, "nodes": nodes}), 400)
    assert "nodes[1].strength: 0.2 x nodes[1].num_inference_steps 4 leaves no step to run in nodes[1]" in detail


def test_background_removal_needs_its_model_and_leaves_transparency(local_app: TestClient, data_dir: Path) -> None:
    detail = error_of(local_app.post("/api/invoke", json={"remove_background": True}), 400)
    assert "remove_background: needs the segmentation model" in detail and "u2net.onnx" in detail
    (DataPaths(data_dir).models("background") / "u2net.onnx").write_bytes(b"")
    subject = Image.new("RGB", (64, 64), "white")
    subject.paste((200, 30, 30), (16, 16, 48, 48))
    (image,), steps = completed(
        local_app, {"image": data_uri(subject), "remove_background": True, "fill_background": True}
    )
    assert [step["kind"] for step in steps] == ["remove_background", "inpaint"]
    pixels = np.asarray(image.convert("RGB"))
    # The fake role paints its colour where the removed background was; the subject stays.
    assert (pixels[20:44, 20:44] == (200, 30, 30)).all() and not (pixels[:8, :8] == 255).all()
    (image,), steps = completed(local_app, {"remove_background": True})
    assert [step["kind"] for step in steps] == ["diffuse", "remove_background"] and image.mode == "RGBA"


def test_a_passs_controlnet_needs_its_file_and_its_annotator_named_by_the_field(
    local_app: TestClient, data_dir: Path
) -> None:
    body = {
        "outscale": 2, "upscale": "nearest", "upscale_diffusion": True, "upscale_diffusion_steps": 10,
        "upscale_diffusion_controlnet": "tile",
    }  # fmt: skip
    detail = error_of(local_app.post("/api/invoke", json=body), 400)
    assert detail.startswith("upscale_diffusion_controlnet: tile needs the ControlNet file control_v11f1e_sd15_tile")
    (DataPaths(data_dir).models("controlnet") / "control_v11f1e_sd15_tile.bin").write_bytes(b"")
    _, steps = completed(local_app, body)
    assert [step.get("controlnet") for step in steps] == [None, None, "tile"]
    assert steps[2]["control"] == steps[2]["source"] == {"step": 1, "each": True}  # each upscaled image
    depth = {**body, "upscale_diffusion_controlnet": "depth", "outscale": 2}
    (DataPaths(data_dir).models("controlnet") / "control_v11f1p_sd15_depth.safetensors").write_bytes(b"")
    detail = error_of(local_app.post("/api/invoke", json=depth), 400)
    assert detail.startswith("upscale_diffusion_controlnet: making a depth control image needs the annotator file(s)")
