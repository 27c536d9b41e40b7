"""Background removal: a salient-object segmentation model (U2-Net, BiRefNet) run by onnxruntime.

The model is a file in the background folder, ``u2net.onnx`` (``BACKGROUND_FILE``): the U2-Net that rembg
distributes (https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2net.onnx, or
``rembg d u2net``, which saves it under ``~/.u2net``). It is the network Enfugue runs from
``u2net.pth``. Any model with the same interface works (one 1x3xHxW image in, a 1x1xHxW map
first out): rembg's u2netp, silueta, isnet, BRIA RMBG and BiRefNet files. Pre- and
post-processing are rembg's (``sessions/u2net.py``, ``sessions/birefnet_general.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from deployments.image_steps import BACKGROUND_INSTALL

logger = logging.getLogger(__name__)

# U2-Net's input size, used when the file leaves height and width symbolic (BiRefNet and BRIA
# files fix theirs at 1024, which is then read from the file).
DEFAULT_SIZE = 320
# ImageNet statistics, which U2-Net, BiRefNet and BRIA RMBG were all trained with.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class SegmenterError(ValueError):
    """A file that is not a usable segmentation model."""


@dataclass(frozen=True)
class Segmenter:
    """A loaded model and the size it reads images at."""

    session: ort.InferenceSession
    input_name: str
    size: tuple[int, int]  # width, height

    def mask(self, image: Image.Image) -> Image.Image:
        """The foreground's opacity ('L', white is subject) at ``image``'s size."""
        pixels = np.asarray(image.convert("RGB").resize(self.size, Image.Resampling.LANCZOS), dtype=np.float32)
        # rembg (and U2-Net's own loader) scale by the image's brightest value, not by 255.
        pixels = (pixels / max(float(pixels.max()), 1e-6) - MEAN) / STD
        batch = pixels.transpose(2, 0, 1)[np.newaxis]
        prediction = self.session.run(None, {self.input_name: batch})[0][0, 0].astype(np.float32)
        if prediction.min() < 0 or prediction.max() > 1:
            # BiRefNet ends in logits (rembg applies a sigmoid); U2-Net's output already is one.
            prediction = 0.5 * (1 + np.tanh(prediction / 2))  # the sigmoid, without exp overflow
        low, high = float(prediction.min()), float(prediction.max())
        # Stretched to the full range as rembg does: the most salient pixel is fully opaque.
        scaled = (prediction - low) / max(high - low, 1e-6)
        grey = Image.fromarray((scaled.clip(0, 1) * 255).astype(np.uint8))  # 2-D uint8: mode L
        return grey.resize(image.size, Image.Resampling.LANCZOS)


def _providers() -> list[str]:
    # CUDA only with the onnxruntime-gpu build; the CPU one lists no CUDA provider.
    available = ort.get_available_providers()
    return [name for name in ("CUDAExecutionProvider", "CPUExecutionProvider") if name in available]


def _static_size(shape: list[object]) -> tuple[int, int]:
    height, width = shape[2], shape[3]
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return width, height
    return DEFAULT_SIZE, DEFAULT_SIZE


def load_segmenter(path: Path) -> Segmenter:
    """The model in the ONNX file at ``path``."""
    if not path.is_file():
        raise FileNotFoundError(f"no background removal model at {path}: {BACKGROUND_INSTALL}")
    try:
        session = ort.InferenceSession(str(path), providers=_providers())
    except Exception as error:  # onnxruntime's errors derive from Exception only
        raise SegmenterError(f"{path.name} is not a readable ONNX model ({type(error).__name__})") from error
    inputs = session.get_inputs()
    shape = list(inputs[0].shape) if inputs else []
    if len(inputs) != 1 or len(shape) != 4 or shape[1] != 3:
        raise SegmenterError(
            f"{path.name}: not an image segmentation model (inputs {shape}; expected one [1, 3, H, W])"
        )
    logger.info("background remover %s on %s", path.name, session.get_providers()[0])
    return Segmenter(session, inputs[0].name, _static_size(shape))


def remove_background(segmenter: Segmenter, image: Image.Image) -> Image.Image:
    """``image`` as RGBA whose alpha is the mask; any alpha it had is replaced, as Enfugue does."""
    cutout = image.convert("RGB")
    # The colours are kept as they are (Enfugue's composite onto transparent black darkens soft
    # edges, and they darken again when the cutout is pasted by its alpha).
    cutout.putalpha(segmenter.mask(image))
    return cutout
