"""Upscaling passes in a plan: an ``Upscale`` step per pass, each followed, with re-diffusion,
by an image-to-image pass over every upscaled output (Enfugue's "upscale diffusion").

Pure data, like the rest of the plan. ``outscale`` is reached at once, or with ``iterative``
in 2x passes; every per-pass value is picked by the pass's index, a shorter list repeating its
last value.
"""

from __future__ import annotations

from typing import Any, TypeVar

from deployments.image_steps import UPSCALE_FILES, Upscale, each_output
from deployments.request import Upscaling
from deployments.steps import Denoise, Diffuse, EachOutput, Origin

T = TypeVar("T")


def per_pass(values: tuple[T, ...], index: int, default: T) -> T:
    """The value of pass ``index``: a list shorter than the passes repeats its last value."""
    if not values:
        return default
    return values[min(index, len(values) - 1)]


def pass_scales(outscale: int, iterative: bool) -> list[int]:
    """The scale of each pass: ``outscale`` at once, or 2x until it is reached."""
    if outscale == 1:
        return []
    return [2] * (outscale.bit_length() - 1) if iterative else [outscale]


def pass_field(name: str, values: tuple[object, ...], index: int) -> str:
    """The request field that gives pass ``index`` its value: ``name[i]`` when a list gives one
    per pass, else ``name`` (one value, or the default, for every pass)."""
    if len(values) < 2:
        return name
    return f"{name}[{min(index, len(values) - 1)}]"


def pass_origin(upscaling: Upscaling, index: int, passes: int) -> Origin:
    """Pass ``index``'s re-diffusion fields, for the messages of the checks on it."""
    chunking = "upscale_diffusion_chunking_size" if upscaling.chunking_size is not None else "chunking_size"
    return Origin(
        where=f"upscaling pass {index + 1} of {passes}",
        fields=(
            ("strength", pass_field("upscale_diffusion_strength", upscaling.strength, index)),
            ("num_inference_steps", pass_field("upscale_diffusion_steps", upscaling.steps, index)),
            ("chunking_size", chunking),
            ("width", "outscale"),
            ("height", "outscale"),
        ),
    )


def pass_chunking(upscaling: Upscaling, index: int, chunking: dict[str, Any]) -> dict[str, Any]:
    """The chunking of pass ``index``'s re-diffusion: the invocation's unless given, doubled every
    pass when scaled, never more than half the model's size (``window``)."""
    window = chunking["window"]
    values = dict(chunking)
    for name, given, scaled in (
        ("chunking_size", upscaling.chunking_size, upscaling.scale_chunking_size),
        ("chunking_blur", upscaling.chunking_blur, upscaling.scale_chunking_blur),
    ):
        value = given if given is not None else chunking[name]
        if scaled:
            value = min(value * 2**index, max(value, window // 2))
        values[name] = value
    return values


def upscale_steps(
    upscaling: Upscaling, made: Denoise, first: int, checkpoint: str, chunking: dict[str, Any]
) -> list[Upscale | Diffuse]:
    """The steps after step ``first - 1``, whose outputs are the images ``made`` started (one per
    seed); re-diffusion runs on ``checkpoint`` (the base's, with ``made``'s VAE and adapters),
    chunked as ``chunking`` says for the first pass (``pass_chunking``)."""
    steps: list[Upscale | Diffuse] = []
    count = len(made.seeds)
    width, height = made.size
    scales = pass_scales(upscaling.outscale, upscaling.iterative)
    for index, scale in enumerate(scales):
        method = per_pass(upscaling.methods, index, "esrgan")
        width, height = width * scale, height * scale
        steps.append(
            Upscale(
                inputs=each_output(first + len(steps) - 1, count), method=method, scale=scale,
                model=UPSCALE_FILES.get(method), width=width, height=height,
            )
        )  # fmt: skip
        if upscaling.diffusion:
            controlnet = per_pass(upscaling.controlnets, index, None)
            if controlnet is not None:  # each upscaled image is its own control image
                kind, model = controlnet
                control = {"controlnet": kind, "controlnet_model": model, "control": EachOutput(first + len(steps) - 1)}
            steps.append(
                Diffuse(
                    checkpoint=checkpoint,
                    prompt=per_pass(upscaling.prompts, index, made.prompt),
                    negative_prompt=per_pass(upscaling.negative_prompts, index, made.negative_prompt),
                    width=width,
                    height=height,
                    num_inference_steps=per_pass(upscaling.steps, index, 100),
                    guidance_scale=per_pass(upscaling.guidance_scale, index, 12.0),
                    scheduler=made.scheduler,
                    seeds=made.seeds,
                    source=EachOutput(first + len(steps) - 1),
                    strength=per_pass(upscaling.strength, index, 0.2),
                    intermediate_steps=made.intermediate_steps,
                    vae=made.vae,
                    precision=made.precision,
                    adapters=made.adapters,
                    inversions=made.inversions,
                    **pass_chunking(upscaling, index, chunking),
                    **(control if controlnet is not None else {}),
                    origin=pass_origin(upscaling, index, len(scales)),
                )
            )
    return steps
