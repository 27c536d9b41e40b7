"""Input images on the canvas: fitting them into its size, and the mask of what gets repainted.

Pure Pillow (no torch, no Ray), as Enfugue does it (enfugue.util.images.fit_image): ``fit``
None is "actual" and ``anchor`` None is top-left. Pixels the fitted image leaves uncovered, or
covers with transparency, are repainted like the masked ones (outpainting).
"""

from __future__ import annotations

import math

from PIL import Image, ImageChops, ImageOps

# ``fit`` and ``anchor`` take the values of serve_app.schemas.Fit and Anchor.
Size = tuple[int, int]


def placement(size: Size, canvas: Size, fit: str | None, anchor: str | None) -> tuple[Size, tuple[int, int]]:
    """The size an image of ``size`` takes on ``canvas`` and where its top-left corner goes."""
    (width, height), (canvas_width, canvas_height) = size, canvas
    if fit == "stretch":
        return canvas, (0, 0)
    if fit in ("cover", "contain"):
        scale = (max if fit == "cover" else min)(canvas_width / width, canvas_height / height)
        # Enfugue rounds a cover up (no uncovered line) and a contain down (no cropped line).
        rounded = math.ceil if fit == "cover" else int
        width, height = rounded(width * scale), rounded(height * scale)
    vertical, horizontal = (anchor or "top-left").split("-")
    left = {"left": 0, "center": canvas_width // 2 - width // 2, "right": canvas_width - width}[horizontal]
    top = {"top": 0, "center": canvas_height // 2 - height // 2, "bottom": canvas_height - height}[vertical]
    return (width, height), (left, top)


def leaves_uncovered(size: Size, canvas: Size, fit: str | None, anchor: str | None) -> bool:
    """Whether an opaque image of ``size`` leaves part of ``canvas`` to be painted."""
    (width, height), (left, top) = placement(size, canvas, fit, anchor)
    return left > 0 or top > 0 or left + width < canvas[0] or top + height < canvas[1]


def fit_image(image: Image.Image, canvas: Size, fit: str | None, anchor: str | None) -> Image.Image:
    """``image`` on a transparent canvas of size ``canvas`` (RGBA): what it covers is opaque."""
    size, corner = placement(image.size, canvas, fit, anchor)
    layer = image.convert("RGBA")
    if layer.size != size:
        layer = layer.resize(size, Image.Resampling.LANCZOS)
    fitted = Image.new("RGBA", canvas, (0, 0, 0, 0))
    fitted.paste(layer, corner, layer)
    return fitted


def repaint_mask(fitted: Image.Image, mask: Image.Image | None, invert_mask: bool) -> Image.Image:
    """Where the model paints (white) on the canvas of ``fitted``: the mask's white pixels (black
    ones with ``invert_mask``; Enfugue's pipeline repaints mask >= 0.5) and every pixel the
    image does not cover opaquely. ``mask`` is already fitted like the image."""
    uncovered = ImageOps.invert(fitted.getchannel("A"))
    if mask is None:
        return uncovered
    grey = mask.convert("L")
    # A fitted mask's own uncovered pixels are transparent: they are the image's too.
    chosen = ImageOps.invert(grey) if invert_mask else grey
    if mask.mode == "RGBA":
        chosen = ImageChops.multiply(chosen, mask.getchannel("A"))
    return ImageChops.lighter(chosen.point(lambda value: 255 if value >= 128 else 0), uncovered)


def flatten(fitted: Image.Image) -> Image.Image:
    """The fitted image as RGB; uncovered pixels are mid-grey (they are repainted anyway)."""
    background = Image.new("RGB", fitted.size, (127, 127, 127))
    background.paste(fitted, (0, 0), fitted)
    return background


def paste_back(original: Image.Image, generated: Image.Image, repaint: Image.Image) -> Image.Image:
    """``generated`` where ``repaint`` is white, ``original`` elsewhere: the pixels a user did not
    ask to change come back exactly (the VAE round trip would otherwise blur them)."""
    return Image.composite(generated.convert("RGB"), original.convert("RGB"), repaint.convert("L"))
