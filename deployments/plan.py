"""A request expanded into a Plan: pure data, no Ray, no torch.

The Planner deployment executes plans; this module decides them, so what an invocation will
do is testable in milliseconds. A plan is a sequence of typed steps. Each step names the role
that runs it and takes its input images from the request or from an earlier step's outputs;
the last step's outputs are the invocation's images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from deployments.canvas import leaves_uncovered
from deployments.image_steps import RemoveBackground, Upscale, each_output
from deployments.request import Checkpoint, GenerationRequest
from deployments.steps import Denoise, Diffuse, ImageSource, Inpaint, Refine, StepOutputs
from deployments.upscale_plan import upscale_steps
from serve_app.errors import BadRequestError

# Of an image-to-image schedule, the part that runs when the request does not say.
DEFAULT_STRENGTH = 0.8

# Every kind of step; a new kind names its role and joins this union.
Step = Diffuse | Inpaint | Refine | Upscale | RemoveBackground
DENOISE = (Diffuse, Inpaint, Refine)


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

    An image with a mask, or one that leaves part of the canvas uncovered (``fit``, ``anchor``),
    is inpainted; with a mask the whole schedule runs unless ``strength`` was given.
    """
    seed = request.seed if request.seed is not None else random_seed
    image = request.image
    width = request.width or (image.width if image else request.checkpoint.size)
    height = request.height or (image.height if image else request.checkpoint.size)
    fields: dict[str, Any] = {
        "checkpoint": request.checkpoint.name,
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "width": width,
        "height": height,
        "num_inference_steps": request.num_inference_steps,
        "guidance_scale": request.guidance_scale,
        "scheduler": request.scheduler,
        "seeds": tuple(seed + index for index in range(request.samples)),
        "intermediate_steps": request.intermediate_steps,
        "vae": request.vae,
        "precision": request.precision,
        "model_size": request.checkpoint.size if request.scale_to_model_size else None,
        "adapters": request.adapters,
        "inversions": request.inversions,
        **_controlnet_fields(request),
    }
    steps: list[Step] = []
    source: ImageSource | None = image
    if request.remove_background and image is not None:  # the input's background
        steps.append(RemoveBackground(inputs=(image,)))
        source = StepOutputs(0, 0)
    made: Denoise
    if image is None:
        made = Diffuse(**fields)
    elif (
        request.mask is not None
        or request.fill_background
        or leaves_uncovered((image.width, image.height), (width, height), request.fit, request.anchor)
    ):
        inpainter = request.inpainter
        made = Inpaint(
            **{
                **fields,
                # The configured inpainter runs in its own deployment; else the base model inpaints.
                **(_on_inpainter(request, inpainter) if inpainter is not None else {}),
            },
            source=source,
            mask=request.mask,
            invert_mask=request.invert_mask,
            strength=request.strength,
            fit=request.fit,
            anchor=request.anchor,
        )
    else:
        strength = request.strength if request.strength is not None else DEFAULT_STRENGTH
        made = Diffuse(**fields, source=source, strength=strength, fit=request.fit, anchor=request.anchor)
    steps.append(made)
    if request.refiner is not None and request.refiner_strength > 0:
        steps.append(_refine(request, made, after=len(steps) - 1))
    if request.remove_background and image is None:  # the outputs' background
        steps.append(RemoveBackground(inputs=each_output(len(steps) - 1, request.samples)))
    if request.upscale is not None:
        steps += upscale_steps(request.upscale, made, len(steps), request.checkpoint.name)
    if request.safe:  # the last images a model paints are the ones the checker looks at
        last = max(index for index, step in enumerate(steps) if isinstance(step, DENOISE))
        steps[last] = replace(steps[last], safe=True)
    return Plan(steps=tuple(steps), seed=seed, samples=request.samples, model=request.model)


def _on_inpainter(request: GenerationRequest, inpainter: Checkpoint) -> dict[str, Any]:
    """What changes when the configured inpainter, not the base, runs an inpaint step."""
    return {
        "checkpoint": inpainter.name,
        "role": "inpainter",
        "model_size": inpainter.size if request.scale_to_model_size else None,
    }


def _controlnet_fields(request: GenerationRequest) -> dict[str, Any]:
    control = request.controlnet
    if control is None:
        return {}
    return {
        "controlnet": control.kind,
        "controlnet_model": control.model,
        "control": control.image or request.image,
        "conditioning_scale": control.scale,
        "process_control_image": control.process,
        "invert_control_image": control.invert,
    }


def _refine(request: GenerationRequest, made: Denoise, after: int) -> Refine:
    """The refiner's pass over the outputs of ``made`` (refiner_strength 0 is no pass at all)."""
    assert request.refiner is not None
    refine = Refine(
        checkpoint=request.refiner.name,
        prompt=made.prompt,
        negative_prompt=made.negative_prompt,
        width=made.width,
        height=made.height,
        num_inference_steps=made.num_inference_steps,
        guidance_scale=request.refiner_guidance_scale,
        scheduler=made.scheduler,
        seeds=made.seeds,
        strength=request.refiner_strength,
        intermediate_steps=made.intermediate_steps,
        precision=made.precision,
        after=after,
        aesthetic_score=request.refiner_aesthetic_score,
        negative_aesthetic_score=request.refiner_negative_aesthetic_score,
    )
    if int(refine.num_inference_steps * request.refiner_strength) < 1:
        raise BadRequestError(
            f"refiner_strength: {request.refiner_strength} x num_inference_steps {refine.num_inference_steps} "
            "leaves no step to run; raise either, or pass refiner_strength 0 for no refining"
        )
    return refine
