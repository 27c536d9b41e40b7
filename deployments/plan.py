"""A request expanded into a Plan: pure data, no Ray, no torch.

The Planner deployment executes plans; this module decides them, so what an invocation will
do is testable in milliseconds. A plan is a sequence of typed steps. Each step names the role
that runs it and takes its input images from the request or from an earlier step's outputs;
the last step's outputs are the invocation's images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from deployments.request import GenerationRequest, InputImage

# Schedulers whose loop runs two model evaluations per step, each reported as a step.
SECOND_ORDER_SCHEDULERS = frozenset({"heun", "dpmd", "adpmd", "dpmsde"})


@dataclass(frozen=True)
class StepOutputs:
    """The images an earlier step of the same plan produced (by its index)."""

    step: int


# Where a step's input images come from.
ImageSource = InputImage | StepOutputs


def _source_summary(source: ImageSource | None) -> dict[str, int] | None:
    if source is None:
        return None
    if isinstance(source, StepOutputs):
        return {"step": source.step}
    return source.summary()


@dataclass(frozen=True)
class Diffuse:
    """Text-to-image, or image-to-image from ``source`` with ``strength``: one batch of ``seeds``."""

    kind: ClassVar[str] = "diffuse"
    role: ClassVar[str] = "base"

    checkpoint: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float
    scheduler: str | None
    seeds: tuple[int, ...]
    source: ImageSource | None = None
    strength: float | None = None
    intermediate_steps: int | None = None

    @property
    def model_id(self) -> str:
        """Which loaded model serves this step (the multiplexing key replicas cache by)."""
        return self.checkpoint

    @property
    def expected_steps(self) -> int:
        """Denoising-loop iterations, as the pipeline will report them."""
        steps = self.num_inference_steps
        if self.source is not None and self.strength is not None:
            steps = min(int(steps * self.strength), steps)
        if self.scheduler in SECOND_ORDER_SCHEDULERS:
            steps = 2 * steps - 1
        return steps

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "role": self.role}
        data.update({name: getattr(self, name) for name in self.__dataclass_fields__})
        data["seeds"] = list(self.seeds)
        data["source"] = _source_summary(self.source)
        return data


# Every kind of step; a new kind names its role and joins this union.
Step = Diffuse


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    seed: int
    samples: int
    model: dict[str, Any] | None = None

    @property
    def expected_steps(self) -> int:
        return sum(step.expected_steps for step in self.steps)

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(step.role for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; input images are replaced by their sizes."""
        return {
            "seed": self.seed,
            "samples": self.samples,
            "model": self.model,
            "steps": [step.to_dict() for step in self.steps],
        }


def make_plan(request: GenerationRequest, random_seed: int) -> Plan:
    """The plan for a resolved request.

    ``random_seed`` is used when the request has none, so the plan records the seed it ran
    with; sample ``i`` starts from the noise of seed + i, so any one output can be redone on
    its own (batched and single runs may differ in the last bit of a few pixels).
    """
    seed = request.seed if request.seed is not None else random_seed
    image = request.image
    step = Diffuse(
        checkpoint=request.checkpoint.name,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        width=request.width or (image.width if image else request.checkpoint.size),
        height=request.height or (image.height if image else request.checkpoint.size),
        num_inference_steps=request.num_inference_steps,
        guidance_scale=request.guidance_scale,
        scheduler=request.scheduler,
        seeds=tuple(seed + index for index in range(request.samples)),
        source=image,
        strength=request.strength if image is not None else None,
        intermediate_steps=request.intermediate_steps,
    )
    return Plan(steps=(step,), seed=seed, samples=request.samples, model=request.model)
