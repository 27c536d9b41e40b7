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
from deployments.image_steps import Composite, RemoveBackground, Upscale, each_output
from deployments.request import Checkpoint, GenerationRequest, Node
from deployments.step_checks import check_steps
from deployments.steps import Denoise, Diffuse, EachOutput, ImageSource, Inpaint, Origin, Refine, StepOutputs
from deployments.upscale_plan import upscale_steps
from serve_app.errors import BadRequestError

# Of an image-to-image schedule, the part that runs when the request does not say.
DEFAULT_STRENGTH = 0.8

# Every kind of step; a new kind names its role and joins this union.
Step = Diffuse | Inpaint | Refine | Upscale | RemoveBackground | Composite
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

    Without nodes the canvas is one node. A node's image with a mask or transparent pixels, or
    one that leaves part of its box uncovered (``fit``, ``anchor``), is inpainted; with a mask
    the whole schedule runs unless ``strength`` was given. Nodes are composed on the canvas in order; what none painted
    is outpainted with the invocation's prompt. Then come the refiner and the upscaling passes.
    A step a role would refuse is a 400 naming its request field (deployments/step_checks.py).
    """
    seed = request.seed if request.seed is not None else random_seed
    image = request.image
    window = request.size or request.checkpoint.size
    width = request.width or (image.width if image else window)
    height = request.height or (image.height if image else window)
    fields = _fields(request, seed, width, height)
    chunking = _chunking(request, window)
    steps: list[Step] = []
    if request.nodes:
        painted = [
            _paint(request, node, fields, chunking, steps, _node_origin(index, node))
            for index, node in enumerate(request.nodes)
        ]
        made: Denoise = _compose(request, fields, chunking, painted, steps)
    else:
        whole = Node(
            0, 0, width, height, image=image, mask=request.mask, invert_mask=request.invert_mask,
            strength=request.strength, fit=request.fit, anchor=request.anchor,
            remove_background=request.remove_background, fill_background=request.fill_background,
        )  # fmt: skip
        painted = [_paint(request, whole, fields, chunking, steps, origin=None)]
        made = steps[painted[0]]  # type: ignore[assignment]
    if request.refiner is not None and request.refiner_strength > 0:
        steps.append(_refine(request, made, after=len(steps) - 1))
    if request.remove_background and image is None and not request.nodes:  # the outputs' background
        steps.append(RemoveBackground(inputs=each_output(len(steps) - 1, request.samples)))
    if request.upscale is not None:
        steps += upscale_steps(request.upscale, made, len(steps), request.checkpoint.name, chunking)
    if request.safe:
        _check_last_painted(steps, painted)
    check_steps(steps)
    return Plan(steps=tuple(steps), seed=seed, samples=request.samples, model=request.model)


def _fields(request: GenerationRequest, seed: int, width: int, height: int) -> dict[str, Any]:
    """What every denoising step of the invocation shares."""
    return {
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
        "model_size": (request.size or request.checkpoint.size) if request.scale_to_model_size else None,
        "adapters": request.adapters,
        "inversions": request.inversions,
        **_controlnet_fields(request),
    }


def _chunking(request: GenerationRequest, window: int) -> dict[str, Any]:
    """How text-to-image and image-to-image steps larger than the model are denoised in windows."""
    if request.chunking_size is not None and request.chunking_size > window:
        raise BadRequestError(
            f"chunking_size: {request.chunking_size} px is more than the model's size, {window}; windows "
            "may not skip pixels: pass at most the size (0 diffuses the canvas at once)"
        )
    return {
        "window": window,
        "chunking_size": request.chunking_size if request.chunking_size is not None else window // 8,
        "chunking_blur": request.chunking_blur if request.chunking_blur is not None else window // 8,
        "multi_scheduler": request.multi_scheduler,
    }


def _paint(
    request: GenerationRequest,
    node: Node,
    fields: dict[str, Any],
    chunking: dict[str, Any],
    steps: list[Step],
    origin: Origin | None,
) -> int:
    """Append the steps that paint ``node``; the index of the step whose outputs are its images.
    ``origin``: the node's, when it is one of the request's nodes (None: the whole canvas)."""
    composed = origin is not None
    values = ("prompt", "negative_prompt", "num_inference_steps", "guidance_scale")
    fields = {
        **fields, "width": node.width, "height": node.height, **({"origin": origin} if origin else {}),
        **{name: getattr(node, name) for name in values if getattr(node, name) is not None},
    }  # fmt: skip
    image = node.image
    source: ImageSource | None = image
    if node.remove_background and image is not None:  # the input's background
        steps.append(RemoveBackground(inputs=(image,)))
        source = StepOutputs(len(steps) - 1, 0)
    if image is None:
        steps.append(Diffuse(**fields, **chunking))
    elif (
        node.mask is not None
        or node.fill_background
        or image.transparent
        or leaves_uncovered((image.width, image.height), node.size, node.fit, node.anchor)
    ):
        inpainter = request.inpainter
        # The configured inpainter runs in its own deployment; else the base model inpaints.
        on = _on_inpainter(request, inpainter) if inpainter is not None else {}
        steps.append(
            Inpaint(
                **{**fields, **on}, source=source, mask=node.mask, invert_mask=node.invert_mask,
                strength=node.strength, fit=node.fit, anchor=node.anchor,
            )
        )  # fmt: skip
    else:
        strength = node.strength if node.strength is not None else DEFAULT_STRENGTH
        steps.append(Diffuse(**fields, **chunking, source=source, strength=strength, fit=node.fit, anchor=node.anchor))
    if composed and node.remove_background and image is None:  # the node's output's background
        steps.append(RemoveBackground(inputs=each_output(len(steps) - 1, request.samples)))
    return len(steps) - 1


def _node_origin(index: int, node: Node) -> Origin:
    """Node ``index``'s fields: its own, and the invocation's steps where it gives none."""
    named = {"strength": "strength", "width": "w", "height": "h"}
    if node.num_inference_steps is not None:
        named["num_inference_steps"] = "num_inference_steps"
    return Origin(
        where=f"nodes[{index}]", fields=tuple((name, f"nodes[{index}].{field}") for name, field in named.items())
    )


def _compose(
    request: GenerationRequest, fields: dict[str, Any], chunking: dict[str, Any], painted: list[int], steps: list[Step]
) -> Denoise:
    """Append the composition of the nodes' images, and the outpainting of what none covered when
    the invocation has a prompt; the canvas's denoising values (for the refiner, upscaling)."""
    samples, canvas = request.samples, Diffuse(**fields, **chunking)
    steps.append(
        Composite(
            inputs=tuple(StepOutputs(index, sample) for index in painted for sample in range(samples)),
            offsets=tuple((node.x, node.y) for node in request.nodes), samples=samples,
            width=canvas.width, height=canvas.height,
        )
    )  # fmt: skip
    covered = not any(node.remove_background for node in request.nodes) and _covers(request.nodes, canvas.size)
    if not request.prompt or covered:
        return canvas
    on = _on_inpainter(request, request.inpainter) if request.inpainter is not None else {}
    outpaint = Inpaint(**{**fields, **on}, source=EachOutput(len(steps) - 1), strength=None)
    steps.append(outpaint)
    return outpaint


def _covers(nodes: tuple[Node, ...], size: tuple[int, int]) -> bool:
    """Whether the nodes' boxes cover every pixel of the canvas (nodes are few: a pixel grid)."""
    width, height = size
    xs = sorted({0, width, *(node.x for node in nodes), *(min(width, node.x + node.width) for node in nodes)})
    ys = sorted({0, height, *(node.y for node in nodes), *(min(height, node.y + node.height) for node in nodes)})
    return all(
        any(node.x <= x < node.x + node.width and node.y <= y < node.y + node.height for node in nodes)
        for x in xs[:-1]
        for y in ys[:-1]
    )


def _check_last_painted(steps: list[Step], painted: list[int]) -> None:
    """Mark for the safety checker the last images a model paints: the last denoising step's, or,
    when the nodes' composition comes after it, every node's."""
    denoised = [index for index, step in enumerate(steps) if isinstance(step, DENOISE)]
    composed = [index for index, step in enumerate(steps) if isinstance(step, Composite)]
    # A node whose background was removed after it was painted: its painting step is the one before.
    nodes = [max(index for index in denoised if index <= node) for node in painted]
    for index in nodes if composed and composed[0] > denoised[-1] else [denoised[-1]]:
        steps[index] = replace(steps[index], safe=True)


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
    return Refine(
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
        origin=Origin(where="the refiner's pass", fields=(("strength", "refiner_strength"),)),
    )
