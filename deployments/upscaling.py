"""The Upscaler role's work: super-resolution models through spandrel, and Pillow's resampling.

esrgan and esrganime run Real-ESRGAN files from the upscaler folder (spandrel recognises the
architecture from the file, so any of its single-image models works under those names). A
model runs on overlapping tiles, so that any image fits on the device; each tile's margin is
context only and is cropped away, so no seam shows where tiles meet. A model's native scale is
repeated while it fits the wanted amount, and Lanczos makes up the rest, so the output is
exactly ``outscale`` times the input.

gfpgan restores faces first (deployments/faces.py), then upscales the image as esrgan does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from spandrel import ImageModelDescriptor, ModelLoader

from deployments.role import Stopped

logger = logging.getLogger(__name__)

RESAMPLING = {
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


class UpscalerError(ValueError):
    """A file that is not an upscaling model this role can run."""


def load_upscaler(path: Path, device: torch.device, dtype: torch.dtype) -> ImageModelDescriptor[Any]:
    """The model in ``path`` on ``device`` in eval mode, in ``dtype`` where the model supports it."""
    try:
        # .pth files go through spandrel's restricted unpickler (tensors and containers only).
        descriptor = ModelLoader().load_from_file(path)
    except Exception as error:
        # torch, safetensors and spandrel each raise their own types for a file that is not a
        # model (UnpicklingError, SafetensorError, UnsupportedModelError, ...): one message.
        raise UpscalerError(f"{path.name} is not an upscaling model spandrel can load ({error})") from error
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.input_channels != 3:
        raise UpscalerError(f"{path.name} is a {descriptor.architecture.id} model, not an RGB upscaling model")
    if descriptor.purpose == "FaceSR":
        raise UpscalerError(f"{path.name} is a face restoration model: it runs as upscale gfpgan")
    supported = {torch.float16: descriptor.supports_half, torch.bfloat16: descriptor.supports_bfloat16}
    if not supported.get(dtype, True):
        dtype = torch.float32  # e.g. models that overflow in half precision
    logger.info("loaded %s (%s, %dx) on %s", path.name, descriptor.architecture.id, descriptor.scale, device)
    return descriptor.to(device=device, dtype=dtype).eval()


def resize(image: Image.Image, method: str, outscale: int) -> Image.Image:
    """``image`` resampled by Pillow to ``outscale`` times its size (alpha premultiplied by Pillow)."""
    if method not in RESAMPLING:
        raise ValueError(f"{method!r} is not a Pillow method; allowed: {', '.join(RESAMPLING)}")
    _check_outscale(outscale)
    return image.resize((image.width * outscale, image.height * outscale), RESAMPLING[method])


def upscale(
    descriptor: ImageModelDescriptor[Any],
    image: Image.Image,
    outscale: int,
    tile: int = 512,
    overlap: int = 32,
    should_stop: Callable[[], bool] | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> Image.Image:
    """``image`` upscaled by the model to exactly ``outscale`` times its size.

    The model sees at most ``tile`` x ``tile`` pixels at once, of which ``overlap`` on each
    inner side are context only. ``on_tile(done, total)`` follows every tile of every pass;
    ``should_stop`` is asked before each tile, and ``Stopped`` is raised when it says so.
    """
    _check_outscale(outscale)
    if overlap < 0 or tile <= 2 * overlap:
        raise ValueError(f"tile ({tile}) must be more than twice overlap ({overlap}), and overlap at least 0")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    rgb = image.convert("RGB")
    # Repeat the model while its scale still fits (a 4x model twice for 16); at least once,
    # even when it overshoots (a 4x model for 2), as Real-ESRGAN's own outscale does.
    passes = 1
    while descriptor.scale > 1 and descriptor.scale ** (passes + 1) <= outscale:
        passes += 1
    sizes = [(rgb.width * descriptor.scale**n, rgb.height * descriptor.scale**n) for n in range(passes)]
    multiple = descriptor.size_requirements.multiple_of
    total = sum(len(_tiles(width, height, tile, overlap, multiple)) for width, height in sizes)
    done = 0
    for _ in range(passes):
        rgb, done = _run_tiled(descriptor, rgb, tile, overlap, should_stop, on_tile, done, total)
    target = (image.width * outscale, image.height * outscale)
    if rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS)
    if has_alpha:
        # A model's RGB weights mean nothing for alpha: resample it on its own.
        rgb.putalpha(image.convert("RGBA").getchannel("A").resize(target, Image.Resampling.LANCZOS))
    return rgb


def _check_outscale(outscale: int) -> None:
    if not isinstance(outscale, int) or outscale < 1:
        raise ValueError(f"outscale must be a whole number of at least 1, not {outscale!r}")


Box = tuple[int, int, int, int]  # left, top, right, bottom


def _spans(length: int, tile: int, overlap: int, multiple: int) -> list[tuple[int, int, int, int]]:
    """(core start, core end, window start, window end) along one side; cores tile it exactly.

    Cut points fall on multiples of ``multiple``: a pixel-unshuffling model (Real-ESRGAN's x2)
    groups pixels from the window's corner, so a window off that grid sees other groups."""
    if length <= tile:
        return [(0, length, 0, length)]
    overlap = math.ceil(overlap / multiple) * multiple
    step = (tile - 2 * overlap) // multiple * multiple
    if step <= 0:
        raise ValueError(f"tile ({tile}) leaves no room inside overlap ({overlap}) for this model")
    # Near-even cores rather than one thin remainder, each at most `step` so its window fits `tile`.
    count = math.ceil(length / step)
    core = math.ceil(length / count / multiple) * multiple
    edges = sorted({min(length, index * core) for index in range(count + 1)} | {length})
    return [(a, b, max(0, a - overlap), min(length, b + overlap)) for a, b in zip(edges, edges[1:], strict=False)]


def _tiles(width: int, height: int, tile: int, overlap: int, multiple: int) -> list[tuple[Box, Box]]:
    """(core, window) boxes, rows first; every window is at most ``tile`` on each side."""
    return [
        ((x0, y0, x1, y1), (wx0, wy0, wx1, wy1))
        for y0, y1, wy0, wy1 in _spans(height, tile, overlap, multiple)
        for x0, x1, wx0, wx1 in _spans(width, tile, overlap, multiple)
    ]


def _run_tiled(
    descriptor: ImageModelDescriptor[Any],
    image: Image.Image,
    tile: int,
    overlap: int,
    should_stop: Callable[[], bool] | None,
    on_tile: Callable[[int, int], None] | None,
    done: int,
    total: int,
) -> tuple[Image.Image, int]:
    """One pass of the model over ``image``; the tiles done so far, counted on from ``done``."""
    scale = descriptor.scale
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # uint8 on the CPU: small
    # uint8 output: a float canvas of a large upscale would not fit in memory.
    output = np.empty((image.height * scale, image.width * scale, 3), dtype=np.uint8)
    multiple = descriptor.size_requirements.multiple_of
    for core, window in _tiles(image.width, image.height, tile, overlap, multiple):
        if should_stop is not None and should_stop():
            raise Stopped
        left, top, right, bottom = window
        crop = pixels[:, top:bottom, left:right].unsqueeze(0)
        result = _infer(descriptor, crop)
        # The core of the window's output; its margins saw the tile's edge and are dropped.
        x0, y0, x1, y1 = ((value - offset) * scale for value, offset in zip(core, (left, top) * 2, strict=True))
        output[core[1] * scale : core[3] * scale, core[0] * scale : core[2] * scale] = result[y0:y1, x0:x1]
        done += 1
        if on_tile is not None:
            on_tile(done, total)
    return Image.fromarray(output), done


def _infer(descriptor: ImageModelDescriptor[Any], crop: torch.Tensor) -> np.ndarray:
    """The model on one uint8 (1, 3, h, w) crop, as a uint8 (h*scale, w*scale, 3) array."""
    tensor = crop.to(device=descriptor.device, dtype=descriptor.dtype) / 255
    result = descriptor(tensor)  # spandrel pads to the model's size requirements and clamps to [0, 1]
    return (result[0].permute(1, 2, 0).float() * 255).round().to(torch.uint8).cpu().numpy()
