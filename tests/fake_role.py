"""A model role without a model: the role protocol, a fixed latency per step, solid-colour images.

The API tier runs on it without importing torch; it is also what the serving layer is
measured against, since its cost is known exactly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from deployments.image_steps import PILLOW_MODEL, RemoveBackground, Upscale
from deployments.plan import Step
from deployments.role import Reporter, Stopped
from deployments.steps import Inpaint, ModelKey, Refine
from serve_app.errors import BadRequestError

# The name a first start gives its demo checkpoint (deployments.demo, which needs torch).
DEMO_NAME = "tiny-random-demo-noise-only"


def write_fake_checkpoint(folder: Path, size: int = 64) -> Path:
    """A diffusers folder with configs and no weights: listed and sized like a checkpoint
    (64, as the demo checkpoint)."""
    (folder / "unet").mkdir(parents=True, exist_ok=True)
    (folder / "vae").mkdir(exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (folder / "unet" / "config.json").write_text(json.dumps({"sample_size": size // 8}))
    (folder / "vae" / "config.json").write_text(json.dumps({"block_out_channels": [8, 8, 16, 16]}))
    return folder


def colour(seed: int) -> tuple[int, int, int]:
    """The colour a fake output of ``seed`` has: distinct seeds, distinct colours (mostly)."""
    return (seed * 97) % 256, (seed * 57 + 80) % 256, (seed * 31 + 160) % 256


class FakeRole:
    """Runs steps by sleeping ``step_seconds`` a step; records what it was asked. An ``Inpaint``
    step's solid colour covers only its repaint mask, as a real role's output does; a ``Refine``
    step returns the negatives of its inputs."""

    def __init__(self, step_seconds: float = 0.005, checkpoints: Path | None = None, acceleration: Any = None) -> None:
        """``acceleration``: taken as a real role takes it (a fake runs no model)."""
        self.step_seconds = step_seconds
        self._checkpoints = checkpoints
        self.loads: list[str] = []
        self.steps: list[Step] = []
        self.stopped_at: list[float] = []  # time.monotonic() of each stop
        self.step_ends: list[list[float]] = []  # per denoising run, time.monotonic() of each step's end

    def load(self, model_id: str) -> str:
        if model_id == PILLOW_MODEL or model_id.startswith(("upscaler/", "background/")):  # the Upscaler's
            self.loads.append(model_id)
            return model_id
        checkpoint = ModelKey.decode(model_id).checkpoint
        if self._checkpoints is not None and not (self._checkpoints / checkpoint).exists():
            raise BadRequestError(f"model: no checkpoint named {checkpoint!r}")
        self.loads.append(model_id)
        return model_id

    def run(self, model: Any, step: Step, inputs: list[Image.Image], reporter: Reporter) -> list[Image.Image]:
        self.steps.append(step)
        if isinstance(step, Upscale):  # nearest-neighbour: each pixel becomes a block
            return [image.resize((image.width * step.scale, image.height * step.scale)) for image in inputs]
        if isinstance(step, RemoveBackground):  # white is the background
            return [_white_transparent(image) for image in inputs]
        total = step.expected_steps
        size = inputs[0].size if inputs else (step.width, step.height)
        began, ends = time.monotonic(), []
        self.step_ends.append(ends)
        for index in range(total):
            if reporter.stopped:
                self.stopped_at.append(time.monotonic())
                raise Stopped
            # Each step ends on its own deadline: a job lasts total x step_seconds, however late a
            # busy machine wakes a sleep (a device's steps do not drift so).
            time.sleep(max(0.0, began + (index + 1) * self.step_seconds - time.monotonic()))
            ends.append(time.monotonic())
            reporter.progress(index + 1, total)
            if step.intermediate_steps and (index + 1) % step.intermediate_steps == 0 and index + 1 < total:
                reporter.intermediate(index + 1, [Image.new("RGB", size, "gray") for _ in step.seeds])
        outputs = [Image.new("RGB", size, colour(seed)) for seed in step.seeds]
        if isinstance(step, Inpaint):  # one source and mask for every seed, or one each
            count = len(outputs) if step.per_image else 1
            images, repaints = (
                inputs[:count] * (len(outputs) // count),
                inputs[count : 2 * count] * (len(outputs) // count),
            )
            return [Image.composite(o, i, r) for o, i, r in zip(outputs, images, repaints, strict=True)]
        if isinstance(step, Refine):  # shows it took the images before it: their negatives
            return [ImageOps.invert(image) for image in inputs]
        return outputs

    def check_health(self) -> None:
        return None


def _white_transparent(image: Image.Image) -> Image.Image:
    cut = image.convert("RGBA")
    cut.putalpha(image.convert("L").point(lambda value: 0 if value == 255 else 255))
    return cut
