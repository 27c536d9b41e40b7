"""Inpainting and fitting through the API: mask, invert_mask, inpainter, fit, anchor (fake role).

The fake role paints its solid colour only where the repaint mask is white, as the real roles
do (tests/deployments/test_inpainting.py), so the pixels show what was asked of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from storage.files import DataPaths
from tests.api.test_invocations import error_of, finished, invoke, output
from tests.fake_role import colour, write_fake_checkpoint
from tests.images import data_uri, gradient

DEMO = "tiny-random-demo-noise-only"
SOURCE = gradient(64, 64)


def left_half_mask() -> str:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    return data_uri(mask)


def run(client: TestClient, body: dict) -> tuple[np.ndarray, dict]:
    status = finished(client, invoke(client, {"num_inference_steps": 3, "seed": 5, **body})["uuid"])
    assert status["status"] == "completed", status
    image = output(client, status)
    return np.asarray(image.convert("RGB")), json.loads(image.text["plan"])["steps"][0]


@pytest.mark.parametrize(
    ("invert", "painted", "kept"), [(False, slice(0, 32), slice(32, 64)), (True, slice(32, 64), slice(0, 32))]
)
def test_the_mask_says_what_is_repainted(local_app: TestClient, invert: bool, painted: slice, kept: slice) -> None:
    pixels, step = run(local_app, {"image": data_uri(SOURCE), "mask": left_half_mask(), "invert_mask": invert})
    assert (pixels[:, painted] == colour(5)).all()
    assert np.array_equal(pixels[:, kept], np.asarray(SOURCE)[:, kept])
    assert (step["kind"], step["role"], step["checkpoint"], step["invert_mask"]) == ("inpaint", "base", DEMO, invert)
    assert step["mask"] == {"width": 64, "height": 64} and step["strength"] is None


def test_a_configured_inpainter_runs_in_its_own_role(local_app: TestClient, data_dir: Path) -> None:
    write_fake_checkpoint(DataPaths(data_dir).models("checkpoint") / "inpainting")
    body = {"model": DEMO, "image": data_uri(SOURCE), "mask": left_half_mask(), "inpainter": "inpainting"}
    _, step = run(local_app, body)
    assert (step["role"], step["checkpoint"]) == ("inpainter", "inpainting")
    assert local_app.role.loads[-1] == "inpainting"  # type: ignore[attr-defined]

    # A preconfigured model's inpainter applies too.
    model = {"name": "with-inpainter", "checkpoint": DEMO, "inpainter": "inpainting"}
    assert local_app.post("/api/models", json=model).status_code == 200
    body = {"model": "with-inpainter", "image": data_uri(SOURCE), "mask": left_half_mask()}
    assert run(local_app, body)[1]["role"] == "inpainter"
    # Without a mask the base does image-to-image, inpainter or not.
    assert run(local_app, {"model": "with-inpainter", "image": data_uri(SOURCE)})[1]["role"] == "base"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"mask": "MASK"}, "mask: needs an `image` to inpaint"),
        ({"image": "SOURCE", "mask": data_uri(gradient(32, 64))}, "mask: is 32x64 but image is 64x64"),
        ({"image": "SOURCE", "mask": "data:image/png;base64,AAAA"}, "mask: does not contain an image"),
        ({"image": "SOURCE", "mask": "MASK", "inpainter": "nope"}, "inpainter: no checkpoint file named 'nope'"),
        (
            {"image": "SOURCE", "mask": "MASK", "inpainter": "../enfugue.duckdb"},
            "inpainter: '../enfugue.duckdb' is not a file",
        ),
        ({"image": "SOURCE", "fit": "fill"}, "fit: Input should be 'actual', 'stretch', 'cover' or 'contain'"),
        ({"image": "SOURCE", "anchor": "middle"}, "anchor: Input should be 'top-left'"),
    ],
)
def test_bad_inpainting_requests_name_the_field(local_app: TestClient, body: dict, detail: str) -> None:
    images = {"SOURCE": data_uri(SOURCE), "MASK": left_half_mask()}
    body = {key: images.get(value, value) if isinstance(value, str) else value for key, value in body.items()}
    assert detail in error_of(local_app.post("/api/invoke", json=body), 400)


@pytest.mark.parametrize(
    ("fit", "anchor", "kept", "painted"),
    [
        # A 64x32 image on a 64x64 canvas: contain keeps its height at the anchor, paints the rest.
        ("contain", "top-left", slice(0, 32), slice(32, 64)),
        ("contain", "bottom-center", slice(32, 64), slice(0, 32)),
        (None, "bottom-right", slice(32, 64), slice(0, 32)),
    ],
)
def test_fit_and_anchor_place_the_image_and_outpaint_the_rest(
    local_app: TestClient, fit: str | None, anchor: str, kept: slice, painted: slice
) -> None:
    source = gradient(64, 32)
    pixels, step = run(local_app, {"image": data_uri(source), "width": 64, "height": 64, "fit": fit, "anchor": anchor})
    assert pixels.shape == (64, 64, 3)
    assert np.array_equal(pixels[kept], np.asarray(source)) and (pixels[painted] == colour(5)).all()
    assert (step["kind"], step["fit"], step["anchor"]) == ("inpaint", fit, anchor)


def test_cover_and_stretch_fill_the_canvas_as_image_to_image(local_app: TestClient) -> None:
    for fit in ("cover", "stretch"):
        pixels, step = run(local_app, {"image": data_uri(gradient(64, 32)), "width": 64, "height": 64, "fit": fit})
        assert pixels.shape == (64, 64, 3) and (step["kind"], step["fit"], step["strength"]) == ("diffuse", fit, 0.8)
    # What the role was given: the image fitted onto the canvas.
    stretched = local_app.role.steps[-1]  # type: ignore[attr-defined]
    assert stretched.prepare([gradient(64, 32)])[0].size == (64, 64)
