"""GFPGAN face restoration (upscale gfpgan): faces found by OpenCV's detector (a YuNet-shaped file
that finds red squares: tests/tiny_faces.py), each restored by the real GFPGAN architecture
(random weights) and pasted back inside its box; then the image is upscaled as esrgan does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from deployments.base import BaseRole
from deployments.demo import DEMO_CHECKPOINT_NAME, write_demo_checkpoint
from deployments.faces import FaceRestorer
from deployments.image_steps import FACE_DETECTOR_FILE, UPSCALE_FILES, Upscale
from deployments.steps import StepOutputs
from deployments.upscaler import UpscalerRole
from storage.files import DataPaths
from tests.api.test_upscale import completed
from tests.conftest import serve_locally
from tests.deployments.role_contract import pixels, run
from tests.images import gradient
from tests.tiny_faces import FACE_COLOUR, write_face_detector, write_gfpgan
from tests.tiny_upscalers import write_tiny_esrgan

FACE_BOX = (64, 32, 32, 32)  # x, y, width, height: one 32 px cell of the detector's grid


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> DataPaths:
    paths = DataPaths(tmp_path_factory.mktemp("faces")).ensure()
    write_demo_checkpoint(paths.models("checkpoint"))
    folder = paths.models("upscaler")
    write_gfpgan(folder / UPSCALE_FILES["gfpgan"])
    write_face_detector(folder / FACE_DETECTOR_FILE)
    write_tiny_esrgan(folder, UPSCALE_FILES["esrgan"], scale=4)
    return paths


@pytest.fixture(scope="module")
def restorer(paths: DataPaths) -> FaceRestorer:
    folder = paths.models("upscaler")
    return FaceRestorer(folder / UPSCALE_FILES["gfpgan"], folder / FACE_DETECTOR_FILE, torch.device("cpu"))


def portrait(face: bool = True) -> Image.Image:
    image = gradient(160, 128)
    if face:
        x, y, width, height = FACE_BOX
        image.paste(Image.new("RGB", (width, height), FACE_COLOUR), (x, y))
    return image


def test_a_face_is_restored_inside_its_box_and_nothing_else_changes(restorer: FaceRestorer) -> None:
    (face,) = restorer.faces(portrait())
    assert face.box == FACE_BOX
    before = np.asarray(portrait()).astype(int)
    after = np.asarray(restorer.restore(portrait())).astype(int)
    x, y, width, height = FACE_BOX
    inside = np.zeros(before.shape[:2], bool)
    inside[y : y + height, x : x + width] = True
    assert np.array_equal(after[~inside], before[~inside])
    assert np.abs(after[inside] - before[inside]).mean() > 5  # GFPGAN's (random) face, pasted in
    # Restored the same way every time: GFPGAN runs without random noise.
    assert np.array_equal(np.asarray(restorer.restore(portrait())), after)


def test_an_image_without_a_face_is_left_as_it_is(restorer: FaceRestorer) -> None:
    assert restorer.faces(portrait(face=False)) == []
    assert np.array_equal(np.asarray(restorer.restore(portrait(face=False))), np.asarray(portrait(face=False)))


def upscale_with(role: UpscalerRole, method: str, image: Image.Image) -> np.ndarray:
    step = Upscale(inputs=(StepOutputs(0),), method=method, scale=2, width=320, height=256, model=UPSCALE_FILES[method])
    return pixels(run(role, role.load(step.model_id), step, [image]))[0].astype(int)


def test_gfpgan_restores_the_faces_then_upscales_as_esrgan(paths: DataPaths, restorer: FaceRestorer) -> None:
    role = UpscalerRole(str(paths.root))
    # Without a face it is a plain upscale.
    assert np.array_equal(upscale_with(role, "gfpgan", portrait(False)), upscale_with(role, "esrgan", portrait(False)))
    restored = upscale_with(role, "gfpgan", portrait())
    assert np.array_equal(restored, upscale_with(role, "esrgan", restorer.restore(portrait())))
    assert not np.array_equal(restored, upscale_with(role, "esrgan", portrait()))


def test_a_file_that_is_not_gfpgan_is_a_400_naming_it(paths: DataPaths, tmp_path: Path) -> None:
    data = DataPaths(tmp_path / "data").ensure()
    folder = data.models("upscaler")
    write_tiny_esrgan(folder, UPSCALE_FILES["gfpgan"], scale=4)  # an ESRGAN under GFPGAN's name
    write_face_detector(folder / FACE_DETECTOR_FILE)
    write_tiny_esrgan(folder, UPSCALE_FILES["esrgan"], scale=4)
    with pytest.raises(Exception, match="GFPGANv1.4.pth is a ESRGAN model, not GFPGAN"):
        UpscalerRole(str(data.root)).load(f"upscaler/{UPSCALE_FILES['gfpgan']}")


@pytest.fixture
def client(paths: DataPaths) -> Iterator[Any]:
    roles = {"base": BaseRole(str(paths.root)), "upscaler": UpscalerRole(str(paths.root))}
    with serve_locally(paths.root, roles=roles) as client:
        yield client


def test_an_invoke_with_upscale_gfpgan_completes(client: Any) -> None:
    body = {"model": DEMO_CHECKPOINT_NAME, "width": 64, "height": 64, "outscale": 2, "upscale": "gfpgan"}
    images, steps = completed(client, body)
    assert images[0].size == (128, 128)
    assert (steps[1]["kind"], steps[1]["method"]) == ("upscale", "gfpgan")
