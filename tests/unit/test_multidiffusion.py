"""The MultiDiffusion window grid and its feather weights: plain sizes, no model."""

from __future__ import annotations

import numpy as np
import pytest

from deployments.multidiffusion import feather_weights, windows

# (width, height, window, stride, windows across, windows down)
GRIDS = [
    (1024, 512, 512, 64, 9, 1),  # diffusers' panorama default: 64-latent window, 8-latent stride
    (1024, 1024, 512, 256, 3, 3),
    (1000, 512, 512, 128, 5, 1),  # 488 px to cover: 4 strides reach 384, the 5th is flush right
    (512, 512, 512, 64, 1, 1),  # the canvas is one window
    (384, 256, 512, 64, 1, 1),  # smaller than the window both ways: one canvas-size window
    (1536, 256, 512, 512, 3, 1),  # stride = window: side by side, no overlap
    (768, 640, 512, 192, 3, 2),  # a stride not dividing the overhang
    (128, 64, 64, 32, 3, 1),
]


def coverage(boxes: list[tuple[int, int, int, int]], width: int, height: int) -> np.ndarray:
    covered = np.zeros((height, width), dtype=int)
    for left, top, right, bottom in boxes:
        covered[top:bottom, left:right] += 1
    return covered


@pytest.mark.parametrize(("width", "height", "window", "stride", "across", "down"), GRIDS)
def test_the_windows_cover_the_canvas_flush_with_its_far_edges(
    width: int, height: int, window: int, stride: int, across: int, down: int
) -> None:
    boxes = windows(width, height, window, stride)
    assert len(boxes) == across * down
    assert (coverage(boxes, width, height) >= 1).all()
    for left, top, right, bottom in boxes:
        assert (right - left, bottom - top) == (min(window, width), min(window, height))
        assert 0 <= left < right <= width and 0 <= top < bottom <= height
        assert all(side % 8 == 0 for side in (left, top, right, bottom))
    assert boxes[0][:2] == (0, 0)
    assert boxes[-1][2:] == (width, height)  # the last row and column end at the far edges
    lefts = sorted({box[0] for box in boxes})
    # Every stride apart, but the last, which may be closer (flush right).
    assert all(later - earlier == stride for earlier, later in zip(lefts[:-2], lefts[1:-1], strict=True))
    assert len(lefts) < 2 or 0 < lefts[-1] - lefts[-2] <= stride


def test_the_panorama_grid_matches_diffusers_views() -> None:
    # diffusers' StableDiffusionPanoramaPipeline.get_views(512, 1024): (top, bottom, left, right) in latents.
    expected = [(0, 64, 8 * index, 8 * index + 64) for index in range(9)]
    assert [(t // 8, b // 8, left // 8, r // 8) for left, t, r, b in windows(1024, 512, 512, 64)] == expected


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((1024, 512, 512, 0), "`stride` must be a positive multiple of 8, got 0"),
        ((1024, 512, 512, 100), "`stride` must be a positive multiple of 8, got 100"),
        ((1024, 512, 512, 576), r"`stride` must be at most `window` \(512\), got 576"),
        ((1020, 512, 512, 64), "`width` must be a positive multiple of 8, got 1020"),
        ((1024, 512, 500, 64), "`window` must be a positive multiple of 8, got 500"),
    ],
)
def test_bad_grids_are_refused_naming_the_argument(arguments: tuple[int, int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        windows(*arguments)


def blended_total(boxes: list, weights: list[np.ndarray], width: int, height: int) -> np.ndarray:
    total = np.zeros((height // 8, width // 8))
    for (left, top, right, bottom), weight in zip(boxes, weights, strict=True):
        assert weight.shape == ((bottom - top) // 8, (right - left) // 8)
        total[top // 8 : bottom // 8, left // 8 : right // 8] += weight
    return total


@pytest.mark.parametrize(("width", "height", "window", "stride", "_across", "_down"), GRIDS)
@pytest.mark.parametrize("blur", [0, 8, 32, 64, 1000])
def test_the_weights_sum_to_one_everywhere(
    width: int, height: int, window: int, stride: int, _across: int, _down: int, blur: int
) -> None:
    boxes = windows(width, height, window, stride)
    weights = feather_weights(boxes, width, height, blur)
    assert all((weight > 0).all() for weight in weights)
    np.testing.assert_allclose(blended_total(boxes, weights, width, height), 1.0, rtol=1e-6)


def test_without_blur_every_window_counts_the_same() -> None:
    width, height = 1024, 1024
    boxes = windows(width, height, 512, 256)
    covered = coverage(boxes, width, height)[::8, ::8]
    for (left, top, right, bottom), weight in zip(boxes, feather_weights(boxes, width, height, 0), strict=True):
        # A plain average: at each latent, one over the number of windows there.
        np.testing.assert_allclose(weight, 1.0 / covered[top // 8 : bottom // 8, left // 8 : right // 8], rtol=1e-6)


def test_blur_fades_the_edges_inside_the_canvas_only() -> None:
    # Two windows overlapping by 256 px; a 64 px (8 latent) feather.
    boxes = windows(768, 512, 512, 256)
    first, second = feather_weights(boxes, 768, 512, 64)
    row = first[20]
    assert row[0] == pytest.approx(1.0)  # the canvas' left edge: no other window, no fade
    assert (first[:, :32] == 1).all()  # alone up to where the second window starts
    # Over the overlap the first fades out and the second in, smoothly.
    overlap = row[32:]
    assert (np.diff(overlap) <= 1e-6).all() and overlap[-1] < 0.2
    assert (np.abs(np.diff(row)) < 0.2).all()
    np.testing.assert_allclose(first[:, 32:] + second[:, :32], 1.0, rtol=1e-6)
    # Top and bottom are canvas edges: nothing fades down the columns.
    np.testing.assert_allclose(first, np.broadcast_to(row, first.shape))


def test_without_overlap_blur_changes_nothing() -> None:
    boxes = windows(1024, 512, 512, 512)
    for weight in feather_weights(boxes, 1024, 512, 64):
        np.testing.assert_allclose(weight, 1.0)


def test_a_negative_blur_is_refused() -> None:
    with pytest.raises(ValueError, match="`blur` must be 0 or more, got -8"):
        feather_weights(windows(1024, 512, 512, 64), 1024, 512, -8)
