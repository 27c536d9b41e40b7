"""Input images on the canvas: every fit and anchor, the repaint mask, pixels kept outside it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deployments.canvas import fit_image, flatten, leaves_uncovered, paste_back, placement, repaint_mask
from serve_app.field_types import Anchor, Fit
from tests.images import gradient

CANVAS = (64, 64)


@pytest.mark.parametrize(
    ("fit", "anchor", "expected"),
    [
        # A 32x16 image on a 64x64 canvas.
        ("actual", None, ((32, 16), (0, 0))),
        (None, "bottom-right", ((32, 16), (32, 48))),
        ("actual", "center-center", ((32, 16), (16, 24))),
        ("stretch", "bottom-right", ((64, 64), (0, 0))),
        ("contain", "top-left", ((64, 32), (0, 0))),
        ("contain", "center-left", ((64, 32), (0, 16))),
        ("contain", "bottom-right", ((64, 32), (0, 32))),
        ("cover", "top-left", ((128, 64), (0, 0))),
        ("cover", "center-center", ((128, 64), (-32, 0))),
        ("cover", "top-right", ((128, 64), (-64, 0))),
    ],
)
def test_placement_of_every_fit(fit: Fit | None, anchor: Anchor | None, expected: tuple) -> None:
    assert placement((32, 16), CANVAS, fit, anchor) == expected


def test_contain_leaves_the_borders_away_from_its_anchor_uncovered() -> None:
    fitted = fit_image(Image.new("RGB", (32, 16), "red"), CANVAS, "contain", "bottom-center")
    alpha = np.asarray(fitted.getchannel("A"))
    assert (alpha[:32] == 0).all() and (alpha[32:] == 255).all()
    assert leaves_uncovered((32, 16), CANVAS, "contain", "bottom-center")
    assert not leaves_uncovered((32, 16), CANVAS, "cover", "center-center")
    assert not leaves_uncovered((32, 16), CANVAS, "stretch", None)
    assert leaves_uncovered((32, 16), CANVAS, "actual", None)
    assert not leaves_uncovered((64, 64), CANVAS, None, None)


def test_cover_crops_around_its_anchor() -> None:
    image = Image.new("RGB", (32, 16), "red")
    image.paste((0, 0, 255), (16, 0, 32, 16))  # left half red, right half blue
    right = np.asarray(flatten(fit_image(image, CANVAS, "cover", "top-right")))
    left = np.asarray(flatten(fit_image(image, CANVAS, "cover", "top-left")))
    assert tuple(right[32, 32]) == (0, 0, 255) and tuple(left[32, 32]) == (255, 0, 0)


def test_repaint_mask_is_white_where_masked_and_where_uncovered() -> None:
    image = gradient(64, 32)
    mask = Image.new("L", (64, 32), 0)
    mask.paste(255, (0, 0, 16, 32))  # repaint the left quarter
    fitted = fit_image(image, CANVAS, "actual", "top-left")  # the bottom half is uncovered
    repaint = np.asarray(repaint_mask(fitted, fit_image(mask, CANVAS, "actual", "top-left"), False))
    assert (repaint[:32, :16] == 255).all() and (repaint[:32, 16:] == 0).all() and (repaint[32:] == 255).all()
    inverted = np.asarray(repaint_mask(fitted, fit_image(mask, CANVAS, "actual", "top-left"), True))
    assert (inverted[:32, :16] == 0).all() and (inverted[:32, 16:] == 255).all() and (inverted[32:] == 255).all()


def test_transparent_pixels_of_the_image_are_repainted() -> None:
    image = Image.new("RGBA", (64, 64), (10, 20, 30, 255))
    image.paste((0, 0, 0, 0), (16, 16, 48, 48))  # a hole
    repaint = np.asarray(repaint_mask(fit_image(image, CANVAS, None, None), None, False))
    assert (repaint[16:48, 16:48] == 255).all() and repaint.sum() == 32 * 32 * 255


def test_paste_back_keeps_every_pixel_outside_the_mask() -> None:
    original, generated = gradient(64, 64), Image.new("RGB", CANVAS, (1, 2, 3))
    repaint = Image.new("L", CANVAS, 0)
    repaint.paste(255, (0, 0, 32, 64))
    result = np.asarray(paste_back(original, generated, repaint))
    assert (result[:, :32] == (1, 2, 3)).all()
    assert np.array_equal(result[:, 32:], np.asarray(original)[:, 32:])
