"""Plan steps that run image models other than diffusion: upscaling and background removal.

Both run on the Upscaler role (deployments/upscaler.py), one output per input image, so an
output the safety checker withheld (None) stays withheld through them. Pure data, like every
step kind (deployments/steps.py); the file names they need live here so that the ingress can
refuse a request whose files are missing before it is queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from PIL import Image

from deployments.steps import ImageSource, StepOutputs, source_summary

# Pillow's resampling filters, by the names the API takes.
PILLOW_METHODS = ("lanczos", "bilinear", "bicubic", "nearest")
# The files the model methods load from the upscaler folder: the names Real-ESRGAN's and
# GFPGAN's releases use (Enfugue downloaded these).
UPSCALE_FILES = {
    "esrgan": "RealESRGAN_x4plus.pth",
    "esrganime": "RealESRGAN_x4plus_anime_6B.pth",
    "gfpgan": "GFPGANv1.4.pth",
}
# gfpgan also needs a face detector (OpenCV's YuNet, in the upscaler folder: deployments/faces.py)
# and upscales what is not a face with esrgan's file.
FACE_DETECTOR_FILE = "face_detection_yunet_2023mar.onnx"
GFPGAN_FILES = (UPSCALE_FILES["gfpgan"], FACE_DETECTOR_FILE, UPSCALE_FILES["esrgan"])
# What the Upscaler role loads for Pillow's methods: nothing.
PILLOW_MODEL = "pillow"

# The segmentation model that removes backgrounds, in the background folder (rembg's U2-Net).
BACKGROUND_FILE = "u2net.onnx"
BACKGROUND_INSTALL = (
    f"put a U2-Net ONNX file named {BACKGROUND_FILE} in the background folder (rembg's: "
    f"https://github.com/danielgatis/rembg/releases/download/v0.0.0/{BACKGROUND_FILE}, "
    "or POST /api/download with type background)"
)


@dataclass(frozen=True)
class _ImageStep:
    """One output per input image; ``model`` is the file the role loads, if any."""

    inputs: tuple[ImageSource, ...]

    role: ClassVar[str] = "upscaler"
    kind: ClassVar[str]
    # Image steps are not denoising: the safety checker never looks at their outputs.
    safe: ClassVar[bool] = False

    @property
    def sources(self) -> tuple[ImageSource, ...]:
        return self.inputs

    @property
    def expected_steps(self) -> int:
        """Progress counts one per image."""
        return len(self.inputs)

    def prepare(self, images: list[Image.Image]) -> list[Image.Image]:
        return images

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "role": self.role}
        data.update({name: getattr(self, name) for name in self.__dataclass_fields__})
        data["inputs"] = [source_summary(source) for source in self.inputs]
        return data


@dataclass(frozen=True)
class Upscale(_ImageStep):
    """Each input ``scale`` times larger by ``method``: a model file (``model``) or Pillow."""

    kind: ClassVar[str] = "upscale"

    method: str
    scale: int
    # The size of the outputs.
    width: int
    height: int
    model: str | None = None

    @property
    def model_id(self) -> str:
        return f"upscaler/{self.model}" if self.model is not None else PILLOW_MODEL


@dataclass(frozen=True)
class RemoveBackground(_ImageStep):
    """Each input with its background made transparent by the segmentation model ``model``."""

    kind: ClassVar[str] = "remove_background"

    model: str = BACKGROUND_FILE

    @property
    def model_id(self) -> str:
        return f"background/{self.model}"


def each_output(step: int, count: int) -> tuple[StepOutputs, ...]:
    return tuple(StepOutputs(step, index) for index in range(count))


@dataclass(frozen=True)
class Composite(_ImageStep):
    """The canvas of every sample: each node's output pasted at its place (``offsets``), in order,
    later nodes over earlier ones; transparent where none painted. ``inputs`` are the nodes'
    outputs, node by node, ``samples`` each. A pure image operation: the Planner runs it."""

    kind: ClassVar[str] = "composite"
    role: ClassVar[str] = "planner"

    offsets: tuple[tuple[int, int], ...]
    samples: int
    width: int
    height: int

    @property
    def model_id(self) -> str:
        return ""

    @property
    def expected_steps(self) -> int:
        return 0

    def run(self, images: list[Image.Image | None]) -> list[Image.Image | None]:
        canvases: list[Image.Image | None] = []
        for sample in range(self.samples):
            layers = [images[node * self.samples + sample] for node in range(len(self.offsets))]
            if any(layer is None for layer in layers):  # a node's output the safety checker withheld
                canvases.append(None)
                continue
            canvas = Image.new("RGBA", (self.width, self.height), (0, 0, 0, 0))
            for offset, layer in zip(self.offsets, layers, strict=True):
                canvas.alpha_composite(layer.convert("RGBA"), offset)
            canvases.append(canvas)
        return canvases
