"""The upscaling work on tiny real Real-ESRGAN files: spandrel loads them, outputs have exact sizes,
tiles leave no seams, alpha survives, Pillow methods resample, and bad files say which file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from spandrel import ImageModelDescriptor

from deployments.image_steps import PILLOW_METHODS, UPSCALE_FILES
from deployments.role import Stopped
from deployments.upscaling import UpscalerError, load_upscaler, resize, upscale
from tests.images import gradient
from tests.tiny_upscalers import write_tiny_esrgan

CPU = torch.device("cpu")
Model = ImageModelDescriptor[Any]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("upscaler")
    write_tiny_esrgan(folder, UPSCALE_FILES["esrgan"], scale=4)
    write_tiny_esrgan(folder, "tiny-x2.safetensors", scale=2, seed=1)
    return folder


@pytest.fixture(scope="module")
def x4(folder: Path) -> Model:
    return load_upscaler(folder / UPSCALE_FILES["esrgan"], CPU, torch.float32)


@pytest.fixture(scope="module")
def x2(folder: Path) -> Model:
    return load_upscaler(folder / "tiny-x2.safetensors", CPU, torch.float32)


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """Detail everywhere, so that a seam anywhere would show."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def difference(first: Image.Image, second: Image.Image) -> np.ndarray:
    return np.abs(np.asarray(first, dtype=np.int16) - np.asarray(second, dtype=np.int16))


def test_real_esrgan_files_load_as_esrgan_in_eval_mode(x4: Model, x2: Model) -> None:
    assert (x4.architecture.id, x4.scale, x4.model.training) == ("ESRGAN", 4, False)
    assert (x2.architecture.id, x2.scale, x2.model.training) == ("ESRGAN", 2, False)
    assert x4.device == CPU and x4.dtype == torch.float32


@pytest.mark.parametrize(
    ("scale", "outscale", "passes"), [(4, 2, 1), (4, 4, 1), (4, 8, 1), (4, 16, 2), (2, 2, 1), (2, 8, 3)]
)
def test_output_is_exactly_outscale_times_the_input(
    x4: Model, x2: Model, scale: int, outscale: int, passes: int
) -> None:
    calls: list[tuple[int, int]] = []
    result = upscale(x4 if scale == 4 else x2, noise(13, 10), outscale, on_tile=lambda *call: calls.append(call))
    assert (result.size, result.mode) == ((13 * outscale, 10 * outscale), "RGB")
    # Small enough for one tile: one model call per pass of the model's own scale.
    assert calls == [(done, passes) for done in range(1, passes + 1)]


# Cores of at most 40 - 2 * 10 = 20: 3 columns (56 wide) by 3 rows (44 high). The x2 model
# pixel-unshuffles by 2, so its cuts fall on a grid of 4: margins of 12, cores of 16, 4 by 3.
@pytest.mark.parametrize(("model", "tiles"), [("x4", 9), ("x2", 12)])
def test_tiles_leave_no_seams(model: str, tiles: int, request: pytest.FixtureRequest) -> None:
    descriptor = request.getfixturevalue(model)
    image = noise(56, 44)
    whole = upscale(descriptor, image, descriptor.scale, tile=512)
    calls: list[tuple[int, int]] = []
    tiled = upscale(descriptor, image, descriptor.scale, tile=40, overlap=10, on_tile=lambda *call: calls.append(call))
    assert calls == [(done, tiles) for done in range(1, tiles + 1)]
    diff = difference(whole, tiled)
    # Margins wider than most of the tiny model's reach: only rounding differs, nowhere a seam.
    assert diff.max() <= 4 and diff.mean() < 0.05
    # The same tiles without context do show seams: the comparison can see them.
    assert difference(whole, upscale(descriptor, image, descriptor.scale, tile=20, overlap=0)).mean() > 1


def test_alpha_is_kept_and_resampled_on_its_own(x4: Model) -> None:
    image = noise(12, 9).convert("RGBA")
    alpha = gradient(12, 9).getchannel("R")
    image.putalpha(alpha)
    result = upscale(x4, image, 2)
    assert (result.size, result.mode) == ((24, 18), "RGBA")
    expected = alpha.resize((24, 18), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(result.getchannel("A")), np.asarray(expected))
    # The colour is the model's, the same as without alpha.
    assert np.array_equal(np.asarray(result.convert("RGB")), np.asarray(upscale(x4, image.convert("RGB"), 2)))


def test_should_stop_stops_between_tiles(x4: Model) -> None:
    calls: list[tuple[int, int]] = []
    with pytest.raises(Stopped):
        upscale(
            x4, noise(56, 44), 4, tile=40, overlap=10,
            should_stop=lambda: len(calls) >= 2, on_tile=lambda *call: calls.append(call),
        )  # fmt: skip
    assert calls == [(1, 9), (2, 9)]


@pytest.mark.parametrize(("arguments", "message"), [
    ({"outscale": 0}, "outscale must be a whole number of at least 1, not 0"),
    ({"outscale": 2.5}, "outscale must be a whole number of at least 1, not 2.5"),
    ({"outscale": 2, "tile": 64, "overlap": 32}, "tile (64) must be more than twice overlap (32)"),
])  # fmt: skip
def test_bad_arguments_are_refused(x4: Model, arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as error:
        upscale(x4, noise(8, 8), **arguments)
    assert message in str(error.value)


def test_pillow_methods_give_exact_sizes_and_differ() -> None:
    image = noise(10, 7).convert("RGBA")
    results = {method: resize(image, method, 4) for method in PILLOW_METHODS}
    assert {(result.size, result.mode) for result in results.values()} == {((40, 28), "RGBA")}
    arrays = [np.asarray(result) for result in results.values()]
    assert all(not np.array_equal(a, b) for index, a in enumerate(arrays) for b in arrays[index + 1 :])


def test_unknown_pillow_method_is_refused() -> None:
    with pytest.raises(ValueError, match="'box' is not a Pillow method; allowed: lanczos, bilinear, bicubic, nearest"):
        resize(noise(4, 4), "box", 2)


def test_a_file_that_is_not_a_model_is_named(tmp_path: Path) -> None:
    garbage = tmp_path / "RealESRGAN_x4plus.pth"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(UpscalerError, match=r"^RealESRGAN_x4plus.pth is not an upscaling model spandrel can load"):
        load_upscaler(garbage, CPU, torch.float32)
    unknown = tmp_path / "unknown.safetensors"
    save_file({"some.weight": torch.zeros(2, 2)}, str(unknown))
    with pytest.raises(UpscalerError, match=r"^unknown.safetensors is not an upscaling model spandrel can load"):
        load_upscaler(unknown, CPU, torch.float32)
