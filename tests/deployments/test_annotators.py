"""The eight ControlNet annotators: each one's real architecture (random weights, under its real
file name in an annotators folder) makes a control image of the photo's size on the role, and an
invoke that asks for it completes through the API on a tiny ControlNet."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from deployments.annotators import Annotator
from deployments.base import BaseRole
from deployments.control import ANNOTATOR_FILES, DEFAULT_FILES
from deployments.demo import DEMO_CHECKPOINT_NAME, write_demo_checkpoint
from storage.files import DataPaths
from tests.api.test_upscale import completed
from tests.conftest import serve_locally
from tests.images import data_uri, gradient
from tests.tiny_annotators import write_annotators
from tests.tiny_models import tiny_controlnet, write_tiny_controlnet

KINDS = tuple(ANNOTATOR_FILES)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> DataPaths:
    paths = DataPaths(tmp_path_factory.mktemp("annotators")).ensure()
    write_demo_checkpoint(paths.models("checkpoint"))
    write_annotators(paths.models("annotators"))
    controlnet = tiny_controlnet()
    for kind in KINDS:
        write_tiny_controlnet(paths.models("controlnet") / DEFAULT_FILES[kind], controlnet)
    return paths


@pytest.fixture(scope="module")
def client(paths: DataPaths) -> Iterator[Any]:
    with serve_locally(paths.root, roles={"base": BaseRole(str(paths.root))}) as client:
        yield client


def photo(width: int, height: int) -> Image.Image:
    """An ordinary image: a gradient with a bright disc, not a control image of any kind."""
    image = gradient(width, height)
    pixels = np.asarray(image).copy()
    ys, xs = np.mgrid[:height, :width]
    pixels[(xs - width // 2) ** 2 + (ys - height // 2) ** 2 < (min(width, height) // 4) ** 2] = (250, 240, 200)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("kind", KINDS)
def test_each_annotator_makes_an_rgb_control_image_of_the_photos_size(paths: DataPaths, kind: str) -> None:
    files = [paths.models("annotators") / name for name in ANNOTATOR_FILES[kind]]
    made = Annotator(kind, files, torch.device("cpu"))(photo(96, 64))
    assert (made.mode, made.size) == ("RGB", (96, 64))
    pixels = np.asarray(made)
    assert pixels.dtype == np.uint8 and 0 <= pixels.min() <= pixels.max() <= 255
    # Random weights draw no skeleton (they find nobody); every other annotator's output varies.
    assert pixels.std() > 0 or kind == "pose"


@pytest.mark.parametrize("kind", KINDS)
def test_an_invoke_with_an_ordinary_photo_completes_through_each_annotator(client: Any, kind: str) -> None:
    body = {"controlnet": kind, "control_image": data_uri(photo(64, 64)), "width": 64, "height": 64}
    images, steps = completed(client, {**body, "model": DEMO_CHECKPOINT_NAME})
    assert images[0].size == (64, 64)
    assert (steps[0]["controlnet"], steps[0]["process_control_image"]) == (kind, True)
    (loaded,) = (model for model_id, model in client.shells["base"].models.items() if f"annotator={kind}" in model_id)
    assert loaded.annotator.kind == kind


def test_the_annotator_changes_what_the_controlnet_sees(client: Any) -> None:
    body = {"controlnet": "depth", "control_image": data_uri(photo(64, 64)), "seed": 9, "model": DEMO_CHECKPOINT_NAME}
    annotated, _ = completed(client, body)
    as_given, steps = completed(client, {**body, "process_control_image": False})
    assert steps[0]["process_control_image"] is False
    assert not np.array_equal(np.asarray(annotated[0]), np.asarray(as_given[0]))


def test_a_missing_annotator_file_is_a_400_naming_it(client: Any, paths: DataPaths) -> None:
    missing = paths.models("annotators") / "sk_model2.pth"
    kept = missing.rename(missing.with_suffix(".kept"))
    try:
        body = {"controlnet": "line", "control_image": data_uri(photo(64, 64)), "model": DEMO_CHECKPOINT_NAME}
        response = client.post("/api/invoke", json=body)
        assert response.status_code == 400
        detail = response.json()["errors"][0]["detail"]
        assert "needs the annotator file(s) sk_model2.pth in the annotators folder" in detail, detail
        assert client.post("/api/invoke", json={**body, "process_control_image": False}).status_code == 200
    finally:
        kept.rename(missing)
    listed = client.get("/api/annotators").json()["data"]
    assert sorted(listed) == sorted(name for names in ANNOTATOR_FILES.values() for name in names)
