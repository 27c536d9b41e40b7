"""A request expanded into a Plan: pure data, no Ray, no torch.

The Planner deployment executes plans; this module decides them, so what an invocation will
do is testable in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from deployments.imaging import decode_data_uri, to_rgb
from serve_app.schemas import InvokeRequest

# Schedulers whose loop runs two model evaluations per step, each reported as a step.
SECOND_ORDER_SCHEDULERS = frozenset({"heun", "dpmd", "adpmd", "dpmsde"})


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint the ingress resolved: its name relative to the checkpoint folder, and size."""

    name: str
    size: int


@dataclass(frozen=True)
class DiffusionStep:
    """One call into a model deployment: text-to-image, or image-to-image when ``image`` is set."""

    checkpoint: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float
    scheduler: str | None
    seeds: tuple[int, ...]
    image: Image.Image | None = field(default=None, compare=False)
    strength: float | None = None

    @property
    def pipeline_key(self) -> str:
        """Which loaded pipeline serves this step (the model-multiplexing id)."""
        return self.checkpoint

    @property
    def expected_steps(self) -> int:
        """Denoising-loop iterations, as the pipeline will report them."""
        steps = self.num_inference_steps
        if self.image is not None and self.strength is not None:
            steps = min(int(steps * self.strength), steps)
        if self.scheduler in SECOND_ORDER_SCHEDULERS:
            steps = 2 * steps - 1
        return steps

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["seeds"] = list(self.seeds)
        data["image"] = _image_summary(self.image)
        return data


@dataclass(frozen=True)
class Plan:
    steps: tuple[DiffusionStep, ...]
    seed: int
    samples: int
    # The preconfigured model's parts whose features come later (refiner, LoRA, ...): recorded.
    model: dict[str, Any] | None = None

    @property
    def expected_steps(self) -> int:
        return sum(step.expected_steps for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; images are replaced by their sizes."""
        return {
            "seed": self.seed,
            "samples": self.samples,
            "model": self.model,
            "steps": [step.to_dict() for step in self.steps],
        }


def _image_summary(image: Image.Image | None) -> dict[str, int] | None:
    return None if image is None else {"width": image.width, "height": image.height}


def make_plan(
    request: InvokeRequest, checkpoint: Checkpoint, random_seed: int, model: dict[str, Any] | None = None
) -> Plan:
    """The plan for a validated request.

    ``random_seed`` is used when the request has none, so the plan records the seed it ran
    with; sample ``i`` starts from the noise of seed + i, so any one output can be redone on
    its own (batched and single runs may differ in the last bit of a few pixels).
    """
    seed = request.seed if request.seed is not None else random_seed
    image = to_rgb(decode_data_uri(request.image)) if request.image is not None else None
    step = DiffusionStep(
        checkpoint=checkpoint.name,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        width=request.width or (image.width if image else checkpoint.size),
        height=request.height or (image.height if image else checkpoint.size),
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        scheduler=request.scheduler,
        seeds=tuple(seed + index for index in range(request.samples)),
        image=image,
        strength=request.strength if image is not None else None,
    )
    return Plan(steps=(step,), seed=seed, samples=request.samples, model=model)
