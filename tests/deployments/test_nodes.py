"""Canvas nodes on the real roles (the demo checkpoint on Base, a tiny U2-Net-shaped segmenter on
the Upscaler), through the API in-process: the seed's cat-and-dog example scaled down, and an
image node whose transparent hole is painted while its opaque part is kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deployments.base import BaseRole
from deployments.image_steps import BACKGROUND_FILE
from deployments.upscaler import UpscalerRole
from storage.files import DataPaths
from tests.api.test_upscale import completed
from tests.conftest import serve_locally
from tests.images import data_uri, gradient
from tests.tiny_filters import write_tiny_segmenter


@pytest.fixture
def client(demo_data_dir: Path) -> Iterator[Any]:
    write_tiny_segmenter(DataPaths(demo_data_dir).models("background") / BACKGROUND_FILE)
    roles = {"base": BaseRole(str(demo_data_dir)), "upscaler": UpscalerRole(str(demo_data_dir))}
    with serve_locally(demo_data_dir, roles=roles) as client:
        yield client


def test_the_seeds_cat_and_dog_example_scaled_down(client: Any) -> None:
    body = {
        "width": 128, "height": 64, "prompt": "A cat and a dog sleeping peacefully on a rug", "num_inference_steps": 3,
        "nodes": [
            {"x": 0, "y": 0, "w": 64, "h": 64, "prompt": "A cat sleeping on a rug", "remove_background": True},
            {"x": 64, "y": 0, "w": 64, "h": 64, "prompt": "A dog sleeping on a rug", "remove_background": True},
        ],
    }  # fmt: skip
    (image,), steps = completed(client, body)
    assert image.size == (128, 64) and image.mode == "RGB"
    kinds = [step["kind"] for step in steps]
    assert kinds == ["diffuse", "remove_background", "diffuse", "remove_background", "composite", "inpaint"]
    assert np.asarray(image).std() > 1


def test_an_image_node_with_a_transparent_hole(client: Any) -> None:
    source = gradient(64, 64).convert("RGBA")
    source.paste((0, 0, 0, 0), (16, 16, 48, 48))
    node = {"x": 0, "y": 0, "w": 64, "h": 64, "image": data_uri(source), "prompt": "a window"}
    (image,), steps = completed(client, {"width": 64, "height": 64, "num_inference_steps": 3, "nodes": [node]})
    assert [step["kind"] for step in steps] == ["inpaint", "composite"]
    pixels, kept = np.asarray(image.convert("RGB")).astype(int), np.asarray(source.convert("RGB")).astype(int)
    hole = np.zeros((64, 64), bool)
    hole[16:48, 16:48] = True
    assert np.array_equal(pixels[~hole], kept[~hole])  # the opaque part, exactly
    assert np.abs(pixels[hole] - 127).mean() > 1  # painted, not left as the flattened grey
