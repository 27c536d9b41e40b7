"""Canvas nodes through the API (fake role): the seed's cat-and-dog example scaled down, an image
node with a transparent hole, and nodes that do not fit refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from storage.files import DataPaths
from tests.api.test_invocations import error_of
from tests.api.test_upscale import completed
from tests.fake_role import colour
from tests.images import data_uri, gradient


def test_the_seeds_cat_and_dog_example_scaled_down(local_app: TestClient, data_dir: Path) -> None:
    (DataPaths(data_dir).models("background") / "u2net.onnx").write_bytes(b"")
    body = {
        "width": 128, "height": 64, "prompt": "A cat and a dog sleeping peacefully on a rug",
        "nodes": [
            {"x": 0, "y": 0, "w": 64, "h": 64, "prompt": "A cat sleeping on a rug", "remove_background": True},
            {"x": 64, "y": 0, "w": 64, "h": 64, "prompt": "A dog sleeping on a rug", "remove_background": True},
        ],
    }  # fmt: skip
    (image,), steps = completed(local_app, body)
    assert image.size == (128, 64)
    kinds = [step["kind"] for step in steps]
    assert kinds == ["diffuse", "remove_background", "diffuse", "remove_background", "composite", "inpaint"]
    assert steps[4]["offsets"] == [[0, 0], [64, 0]] and steps[4]["role"] == "planner"
    # The fake role's backgrounds are not white, so nothing was removed: both nodes' colours show.
    assert np.asarray(image.convert("RGB"))[32, 32].tolist() == list(colour(3))


def test_an_image_node_with_a_transparent_hole_gets_the_hole_filled(local_app: TestClient) -> None:
    source = gradient(64, 64).convert("RGBA")
    source.paste((0, 0, 0, 0), (16, 16, 48, 48))
    body = {
        "width": 64,
        "height": 64,
        "nodes": [{"x": 0, "y": 0, "w": 64, "h": 64, "image": data_uri(source), "prompt": "a hole"}],
    }
    (image,), steps = completed(local_app, body)
    assert [step["kind"] for step in steps] == ["inpaint", "composite"]
    pixels = np.asarray(image.convert("RGB"))
    assert (pixels[20:44, 20:44] == colour(3)).all()  # the hole, painted
    kept = np.asarray(source.convert("RGB"))
    assert np.array_equal(pixels[:16], kept[:16]) and np.array_equal(pixels[:, 48:], kept[:, 48:])


def test_what_no_node_covers_is_outpainted_with_the_prompt(local_app: TestClient) -> None:
    body = {
        "width": 128,
        "height": 64,
        "prompt": "a wide field",
        "nodes": [{"x": 0, "y": 0, "w": 64, "h": 64, "prompt": "a cow"}],
    }
    (image,), steps = completed(local_app, body)
    assert [step["kind"] for step in steps] == ["diffuse", "composite", "inpaint"]
    assert image.size == (128, 64) and image.mode == "RGB"
    (image,), steps = completed(local_app, {**body, "prompt": ""})
    assert image.mode == "RGBA" and image.getpixel((100, 32))[3] == 0  # no prompt: left transparent


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"nodes": [{"x": 32, "y": 0, "w": 64, "h": 64}]}, "nodes.0: the 64x64 box at (32, 0) leaves the 64x64 canvas"),
        ({"nodes": [{"x": 0, "y": 0, "w": 60, "h": 64}]}, "nodes.0.w"),
        ({"nodes": [{"x": 0, "y": 0, "w": 64, "h": 64, "seed": 3}]}, "nodes.0.seed"),
        ({"nodes": [], "prompt": "x"}, "nodes"),
        (
            {"nodes": [{"x": 0, "y": 0, "w": 64, "h": 64}], "image": data_uri(Image.new("RGB", (64, 64)))},
            "image: with nodes",
        ),
    ],
)
def test_nodes_that_do_not_fit_are_refused_by_name(local_app: TestClient, body: dict, detail: str) -> None:
    assert detail in error_of(local_app.post("/api/invoke", json=body), 400)
