"""Control images made without annotator models: canny, scribble, tile, inverted drawings."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from deployments.control import DEFAULT_FILES, control_image, inpaint_condition
from serve_app.schemas import CONTROLNET_SETTINGS, CONTROLNETS


def square() -> Image.Image:
    image = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill="white")
    return image


def test_every_kind_and_its_sdxl_variants_have_a_default_file() -> None:
    assert set(DEFAULT_FILES) == set(CONTROLNET_SETTINGS) and set(CONTROLNETS) <= set(DEFAULT_FILES)


def test_canny_finds_the_edges_of_a_square() -> None:
    edges = np.asarray(control_image("canny", square(), process=True, invert=False).convert("L"))
    assert edges[16, 30] == 255 or edges[15, 30] == 255  # on the top edge
    assert edges[32, 32] == 0 and edges[2, 2] == 0  # inside and outside: no edge


def test_scribbles_become_white_lines_on_black() -> None:
    drawing = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(drawing).line((0, 32, 63, 32), fill="black", width=3)
    lines = np.asarray(control_image("scribble", drawing, process=True, invert=False).convert("L"))
    assert lines[32, 10] == 255 and lines[5, 5] == 0


def test_unprocessed_images_are_used_as_given_or_inverted() -> None:
    given = np.asarray(control_image("depth", square(), process=False, invert=False))
    assert np.array_equal(given, np.asarray(square()))
    inverted = np.asarray(control_image("depth", square(), process=False, invert=True))
    assert np.array_equal(inverted, 255 - np.asarray(square()))
    assert np.array_equal(np.asarray(control_image("tile", square(), process=True, invert=False)), np.asarray(square()))


def test_the_inpaint_condition_marks_repainted_pixels() -> None:
    repaint = Image.new("L", (64, 64), 0)
    repaint.paste(255, (0, 0, 32, 64))
    condition = inpaint_condition(square(), repaint)
    assert condition.shape == (1, 64, 64, 3) and (condition[0, :, :32] == -1).all()
    assert condition[0, 32, 40].tolist() == [1.0, 1.0, 1.0]
