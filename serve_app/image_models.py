"""The files an invoke body's upscaling and background removal need: found, or 400 naming them.

Checked before the invocation is queued, so a request whose files are missing never waits in
the queue to fail (plain file lookups, no torch).
"""

from __future__ import annotations

from deployments.image_steps import BACKGROUND_FILE, BACKGROUND_INSTALL, GFPGAN_FILES, UPSCALE_FILES
from deployments.request import Upscaling
from serve_app.errors import BadRequestError
from serve_app.schemas import InvokeRequest
from storage.shared import SharedStorage


def _listed(value: object) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list) else (value,)


def upscaling(
    request: InvokeRequest, storage: SharedStorage, controlnets: tuple[tuple[str, str], ...] = ()
) -> Upscaling | None:
    """The request's upscaling passes (None: no ``outscale``), their model files present; each
    pass's ControlNet (kind, file) as ``controlnets`` gives them (their files found)."""
    if request.outscale == 1:
        return None
    methods = _listed(request.upscale) or ("esrgan",)
    for method in methods:
        names = GFPGAN_FILES if method == "gfpgan" else (UPSCALE_FILES.get(method),)
        for name in names:
            if name is not None and storage.find_model("upscaler", name) is None:
                raise BadRequestError(
                    f"upscale: {method} needs the file {name} in the upscaler folder; download it there "
                    "(POST /api/download with type upscaler) or choose lanczos, bicubic, bilinear or nearest"
                )
    return Upscaling(
        outscale=request.outscale,
        iterative=request.upscale_iterative,
        methods=methods,
        diffusion=request.upscale_diffusion,
        steps=_listed(request.upscale_diffusion_steps) or (100,),
        guidance_scale=_listed(request.upscale_diffusion_guidance_scale) or (12.0,),
        strength=_listed(request.upscale_diffusion_strength) or (0.2,),
        prompts=_listed(request.upscale_diffusion_prompt),
        negative_prompts=_listed(request.upscale_diffusion_negative_prompt),
        controlnets=controlnets,
        chunking_size=request.upscale_diffusion_chunking_size,
        chunking_blur=request.upscale_diffusion_chunking_blur,
        scale_chunking_size=request.upscale_diffusion_scale_chunking_size,
        scale_chunking_blur=request.upscale_diffusion_scale_chunking_blur,
    )


def check_background(request: InvokeRequest, storage: SharedStorage) -> None:
    """400 naming the segmentation model when ``remove_background`` asks for it and it is missing."""
    wanted = request.remove_background or any(node.remove_background for node in request.nodes or ())
    if wanted and storage.find_model("background", BACKGROUND_FILE) is None:
        raise BadRequestError(f"remove_background: needs the segmentation model; {BACKGROUND_INSTALL}")
