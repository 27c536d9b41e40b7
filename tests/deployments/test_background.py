"""Background removal on tiny ONNX segmenters with U2-Net's and BiRefNet's interfaces."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from deployments.background import (
    DEFAULT_SIZE,
    SegmenterError,
    load_segmenter,
    remove_background,
)
from deployments.image_steps import BACKGROUND_FILE
from tests.tiny_filters import TINY_SIZE, write_tiny_segmenter


def red_square_on_blue(size: tuple[int, int] = (96, 64)) -> Image.Image:
    image = Image.new("RGB", size, (0, 0, 255))
    ImageDraw.Draw(image).rectangle((24, 16, 55, 47), fill=(255, 0, 0))
    return image


@pytest.mark.parametrize(
    ("size", "logits"),
    [(TINY_SIZE, False), (None, False), (TINY_SIZE, True)],
    ids=["u2net-static", "u2net-dynamic", "birefnet-logits"],
)
def test_mask_separates_subject_from_background(tmp_path: Path, size: int | None, logits: bool) -> None:
    segmenter = load_segmenter(write_tiny_segmenter(tmp_path / BACKGROUND_FILE, size=size, logits=logits))
    assert segmenter.size == ((size, size) if size else (DEFAULT_SIZE, DEFAULT_SIZE))
    image = red_square_on_blue()
    mask = segmenter.mask(image)
    assert (mask.mode, mask.size) == ("L", image.size)
    assert mask.getpixel((40, 32)) > 230  # inside the red square
    assert mask.getpixel((4, 4)) < 25  # blue background


def test_remove_background_gives_rgba_at_input_size(tmp_path: Path) -> None:
    segmenter = load_segmenter(write_tiny_segmenter(tmp_path / BACKGROUND_FILE))
    image = red_square_on_blue()
    cutout = remove_background(segmenter, image.convert("RGBA"))
    assert (cutout.mode, cutout.size) == ("RGBA", image.size)
    red, _, _, alpha = cutout.getpixel((40, 32))
    assert (red, alpha > 230) == (255, True)
    # The background turns transparent; its colour is kept, not blackened.
    _, _, blue, alpha = cutout.getpixel((4, 4))
    assert (blue, alpha < 25) == (255, True)


def test_missing_file_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"u2net\.onnx.*rembg"):
        load_segmenter(tmp_path / BACKGROUND_FILE)


def test_file_that_is_not_onnx_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a model at all")
    with pytest.raises(SegmenterError, match=r"broken\.onnx is not a readable ONNX model"):
        load_segmenter(path)
