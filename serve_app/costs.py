"""What an invocation costs, checked at admission against the limits in settings.

The cost is read off the plan (every step: its pixels, samples and denoising steps), so what
the planner adds later (upscale passes, chunked windows) is counted as it is run.
"""

from __future__ import annotations

from typing import Any

from deployments.image_steps import Upscale
from deployments.plan import DENOISE, Plan
from serve_app.errors import BadRequestError

# The largest side an upscaled image may have: 16384 x 16384 RGBA is 1 GiB in memory.
MAX_UPSCALED_SIDE = 16384


def check_cost(plan: Plan, limits: dict[str, Any]) -> None:
    """400 naming the limit a plan is over; ``limits`` are the ``max_prompt_length``,
    ``max_pixels_per_step`` and ``max_pixel_steps`` settings."""
    for step in plan.steps:
        if isinstance(step, Upscale):
            _check_upscaled(step)
        if not isinstance(step, DENOISE):
            continue
        for field in ("prompt", "negative_prompt"):
            length = len(getattr(step, field))
            if length > limits["max_prompt_length"]:  # a preconfigured model's prompt merged in
                raise BadRequestError(
                    f"{field}: {length} characters with the model's own; at most {limits['max_prompt_length']} "
                    "are allowed (the max_prompt_length setting)"
                )
        batch = step.width * step.height * len(step.seeds)
        if batch > limits["max_pixels_per_step"]:
            raise BadRequestError(
                f"width x height x samples: {step.width}x{step.height}x{len(step.seeds)} = {batch} pixels in one "
                f"step; at most {limits['max_pixels_per_step']} are allowed (the max_pixels_per_step setting)"
            )
    total = sum(
        step.width * step.height * len(step.seeds) * step.expected_steps
        for step in plan.steps
        if isinstance(step, DENOISE)
    )
    if total > limits["max_pixel_steps"]:
        raise BadRequestError(
            f"width x height x samples x num_inference_steps: {total} pixel steps; at most "
            f"{limits['max_pixel_steps']} are allowed (the max_pixel_steps setting)"
        )


def _check_upscaled(step: Upscale) -> None:
    if max(step.width, step.height) > MAX_UPSCALED_SIDE:
        raise BadRequestError(
            f"outscale: the upscaled images would be {step.width}x{step.height}; at most {MAX_UPSCALED_SIDE} "
            "pixels a side are allowed (lower outscale, or the size)"
        )
