"""ControlNet through the API (fake role): the file each kind needs, settings naming others, the
control image prepared for the role, and what is refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from storage.files import DataPaths
from tests.api.test_inpainting import left_half_mask, run
from tests.api.test_invocations import error_of
from tests.images import data_uri, gradient


def drawing() -> Image.Image:
    image = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill="white")
    return image


@pytest.fixture
def controlnets(data_dir: Path) -> Path:
    folder = DataPaths(data_dir).models("controlnet")
    for name in (
        "control_v11p_sd15_canny.safetensors",
        "control_v11p_sd15_inpaint.safetensors",
        "my-depth.safetensors",
    ):
        (folder / name).write_bytes(b"")
    return folder


def test_canny_takes_enfugues_file_and_the_role_gets_the_edges(local_app: TestClient, controlnets: Path) -> None:
    _, step = run(local_app, {"controlnet": "canny", "control_image": data_uri(drawing()), "conditioning_scale": 0.6})
    assert (step["controlnet"], step["controlnet_model"], step["conditioning_scale"]) == (
        "canny", "control_v11p_sd15_canny.safetensors", 0.6,
    )  # fmt: skip
    assert step["control"] == {"width": 64, "height": 64} and step["process_control_image"] is True
    made = local_app.role.steps[-1]  # type: ignore[attr-defined]
    assert made.model_id.endswith("//controlnet=control_v11p_sd15_canny.safetensors")
    (edges,) = made.prepare([drawing()])
    assert np.asarray(edges.convert("L")).max() == 255 and np.asarray(edges.convert("L"))[32, 32] == 0


def test_a_setting_names_another_file_and_ready_images_go_unprocessed(local_app: TestClient, controlnets: Path) -> None:
    body = {"controlnet": "depth", "control_image": data_uri(gradient(64, 64)), "process_control_image": False}
    assert "controlnet: depth needs the ControlNet file control_v11f1p_sd15_depth.safetensors" in error_of(
        local_app.post("/api/invoke", json=body), 400
    )
    assert local_app.post("/api/settings", json={"depth": "my-depth.safetensors"}).status_code == 200
    _, step = run(local_app, {**body, "invert_control_image": True})
    assert (step["controlnet_model"], step["invert_control_image"]) == ("my-depth.safetensors", True)
    (control,) = local_app.role.steps[-1].prepare([gradient(64, 64)])  # type: ignore[attr-defined]
    assert np.array_equal(np.asarray(control), 255 - np.asarray(gradient(64, 64)))


def test_an_annotated_kind_sends_the_photo_to_the_role_which_loads_the_annotator(
    local_app: TestClient, controlnets: Path, data_dir: Path
) -> None:
    from deployments.control import ANNOTATOR_FILES

    assert local_app.post("/api/settings", json={"depth": "my-depth.safetensors"}).status_code == 200
    body = {"controlnet": "depth", "control_image": data_uri(gradient(64, 64))}
    assert (
        "controlnet: making a depth control image needs the annotator file(s) dpt_hybrid-midas-501f0c75.pt in "
        "the annotators folder" in error_of(local_app.post("/api/invoke", json=body), 400)
    )
    for name in ANNOTATOR_FILES["depth"]:
        (DataPaths(data_dir).models("annotators") / name).write_bytes(b"")
    _, step = run(local_app, body)
    assert (step["controlnet"], step["process_control_image"]) == ("depth", True)
    made = local_app.role.steps[-1]  # type: ignore[attr-defined]
    assert made.model_id == "tiny-random-demo-noise-only//controlnet=my-depth.safetensors//annotator=depth"
    (control,) = made.prepare([gradient(64, 64)])  # the photo itself: the role's annotator makes the depth map
    assert np.array_equal(np.asarray(control), np.asarray(gradient(64, 64)))
    given = run(
        local_app, {"controlnet": "depth", "control_image": data_uri(gradient(64, 64)), "process_control_image": False}
    )
    assert "annotator" not in local_app.role.steps[-1].model_id  # type: ignore[attr-defined]
    assert given[1]["process_control_image"] is False


def test_the_image_is_the_control_image_unless_one_is_given(local_app: TestClient, controlnets: Path) -> None:
    body = {"image": data_uri(gradient(64, 64)), "mask": left_half_mask(), "controlnet": "inpaint"}
    _, step = run(local_app, body)
    assert (step["kind"], step["controlnet"], step["control"]) == ("inpaint", "inpaint", {"width": 64, "height": 64})


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"control_image": "IMAGE"}, "control_image: needs `controlnet` (canny|mlsd|"),
        ({"controlnet": "canny"}, "controlnet: needs a `control_image` (or an `image`)"),
        ({"controlnet": "inpaint", "image": "IMAGE"}, "controlnet: inpaint needs a `mask`"),
        ({"controlnet": "qr", "control_image": "IMAGE"}, "controlnet: Input should be 'canny'"),
        (
            {"controlnet": "canny", "control_image": "IMAGE", "conditioning_scale": 3},
            "conditioning_scale: Input should be less than or equal to 2",
        ),
        (
            {"controlnet": "canny", "control_image": "data:image/png;base64,AAAA"},
            "control_image: does not contain an image",
        ),
    ],
)
def test_bad_controlnet_requests_name_the_field(
    local_app: TestClient, controlnets: Path, body: dict, detail: str
) -> None:
    body = {key: data_uri(drawing()) if value == "IMAGE" else value for key, value in body.items()}
    assert detail in error_of(local_app.post("/api/invoke", json=body), 400)


def test_a_setting_may_not_leave_the_controlnet_folder(local_app: TestClient, controlnets: Path) -> None:
    assert local_app.post("/api/settings", json={"canny": "../enfugue.duckdb"}).status_code == 200
    body = {"controlnet": "canny", "control_image": data_uri(drawing())}
    assert "is not a file in the controlnet folder" in error_of(local_app.post("/api/invoke", json=body), 400)
