"""What a role would refuse at run time, checked on the plan before the invocation is admitted.

Pure data, like the plan. Each check names the request field the caller sets (a node's or an
upscaling pass's, through the step's ``Origin``), so a job that could only fail is a 400 instead of
an error after its wait in the queue. The roles keep their own checks as a last line: a role
refusing a step that these let through is a bug here.
"""

from __future__ import annotations

from deployments.steps import LATENT_SCALE, Denoise
from serve_app.errors import BadRequestError


def check_steps(steps: tuple[object, ...] | list[object]) -> None:
    """400 naming the field of the first denoising step a role would refuse."""
    for step in steps:
        if isinstance(step, Denoise):
            _check_schedule(step)
            _check_size(step)
            _check_windows(step)


def _where(step: Denoise) -> str:
    return f" in {step.origin.where}" if step.origin.where else ""


def _check_schedule(step: Denoise) -> None:
    """Image to image runs the last ``strength`` of the schedule: at least one step of it."""
    if step.strength is None:
        return
    if int(step.num_inference_steps * step.strength) < 1:
        field = step.origin.field
        raise BadRequestError(
            f"{field('strength')}: {step.strength} x {field('num_inference_steps')} {step.num_inference_steps} "
            f"leaves no step to run{_where(step)}; raise either"
        )


def _check_size(step: Denoise) -> None:
    """The VAE halves a side three times: sides the pipeline runs at are multiples of 8."""
    for name, value in zip(("width", "height"), step.diffusion_size, strict=True):
        if value % LATENT_SCALE:
            raise BadRequestError(
                f"{step.origin.field(name)}: {value} px{_where(step)} is not a multiple of {LATENT_SCALE}"
            )


def _check_windows(step: Denoise) -> None:
    """Windows move by ``chunking_size`` px: more than a window apart they would skip pixels."""
    if not step.chunked or step.window is None:
        return
    if step.chunking_size > step.window:
        raise BadRequestError(
            f"{step.origin.field('chunking_size')}: {step.chunking_size} px{_where(step)} is more than the "
            f"model's size, {step.window}; windows may not skip pixels: pass at most the size"
        )
