"""The Base and Inpainter roles: ``Diffuse`` and ``Inpaint`` steps on one device.

``BaseRole`` does the work and knows nothing of Ray; ``Base`` is its deployment, in the shell
every role shares (``deployments.role``). The Inpainter is the same work on the checkpoints an
inpainter is configured with (inpainting ones with a 9-channel UNet, or any other), in its own
deployment so that it scales and holds its models apart from the base.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    AutoPipelineForText2Image,
    DiffusionPipeline,
)
from PIL import Image

from deployments.canvas import paste_back
from deployments.pipelines import (
    INPAINTING,
    TEXT_TO_IMAGE,
    device_and_dtype,
    generators,
    load_pipeline,
    make_scheduler,
    place,
)
from deployments.plan import Diffuse, Inpaint
from deployments.role import Reporter, Stopped, role_deployment
from serve_app.errors import BadRequestError
from storage.files import DataPaths, UnsafePathError, find_model

logger = logging.getLogger(__name__)


class BaseRole:
    """Loads checkpoints by name and runs ``Diffuse`` and ``Inpaint`` steps on them."""

    # The pipeline classes (model_index.json) this role loads, and what they are for.
    accepts: frozenset[str] = TEXT_TO_IMAGE
    purpose = "generate from text"

    def __init__(self, data_dir: str) -> None:
        self._paths = DataPaths(Path(data_dir))
        self.device, self.dtype = device_and_dtype(None)

    def load(self, model_id: str) -> DiffusionPipeline:
        """``model_id`` is the checkpoint's name in the checkpoint folder."""
        try:
            path = find_model(self._paths.models("checkpoint"), model_id)
        except UnsafePathError as error:
            raise BadRequestError(f"model: {error}") from error
        if path is None:
            raise BadRequestError(f"model: no checkpoint named {model_id!r}")
        logger.info("loading checkpoint %s on %s", model_id, self.device)
        pipeline = load_pipeline(path, self._paths.configs, self.dtype, self.accepts, self.purpose)
        return place(pipeline, self.device)

    def run(
        self, pipeline: DiffusionPipeline, step: Diffuse | Inpaint, inputs: list[Image.Image], reporter: Reporter
    ) -> list[Image.Image]:
        scheduler = make_scheduler(pipeline.scheduler.config, step.scheduler, step.seeds[0])
        if isinstance(step, Inpaint):
            runner = AutoPipelineForInpainting.from_pipe(pipeline, scheduler=scheduler)
            image, repaint = inputs
            extra: dict[str, Any] = {
                "image": image, "mask_image": repaint, "width": step.width, "height": step.height,
                "strength": step.strength if step.strength is not None else 1.0,
            }  # fmt: skip
        elif not inputs:
            runner = AutoPipelineForText2Image.from_pipe(pipeline, scheduler=scheduler)
            extra = {"width": step.width, "height": step.height}
        else:
            runner = AutoPipelineForImage2Image.from_pipe(pipeline, scheduler=scheduler)
            # One source image; each of the step's seeds makes one output from it.
            extra = {"image": inputs[0], "strength": step.strength}
        runner.set_progress_bar_config(disable=True)

        def on_step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            done, every = index + 1, step.intermediate_steps
            reporter.progress(done, pipe.num_timesteps)
            if every and done % every == 0 and done < pipe.num_timesteps:
                reporter.intermediate(done, decode(pipe, tensors["latents"]))
            if reporter.stopped:
                pipe._interrupt = True  # diffusers' own cooperative stop, before the next step
            return tensors

        with torch.inference_mode():
            result = runner(
                prompt=step.prompt,
                negative_prompt=step.negative_prompt or None,
                num_inference_steps=step.num_inference_steps,
                guidance_scale=step.guidance_scale,
                num_images_per_prompt=len(step.seeds),
                generator=generators(step.seeds),
                callback_on_step_end=on_step_end,
                output_type="pil",
                **extra,
            )
        if reporter.stopped:
            raise Stopped
        if isinstance(step, Inpaint):
            return [paste_back(image, output, repaint) for output in result.images]
        return list(result.images)

    def check_health(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.mem_get_info(self.device)  # raises when the device is lost


def decode(pipe: Any, latents: torch.Tensor) -> list[Image.Image]:
    """Latents as images, as the pipeline's own last step makes them (a VAE pass)."""
    vae = pipe.vae
    scaled = latents / vae.config.scaling_factor
    if getattr(vae.config, "force_upcast", False) and vae.dtype == torch.float16:  # SDXL's VAE overflows in fp16
        decoded = vae.to(torch.float32).decode(scaled.float(), return_dict=False)[0]
        vae.to(torch.float16)
    else:
        decoded = vae.decode(scaled.to(vae.dtype), return_dict=False)[0]
    return pipe.image_processor.postprocess(decoded, output_type="pil")


class InpainterRole(BaseRole):
    """The inpainter's checkpoints: inpainting ones besides the text-to-image ones."""

    accepts = TEXT_TO_IMAGE | INPAINTING
    purpose = "inpaint"


Base = role_deployment(BaseRole, name="Base")
Inpainter = role_deployment(InpainterRole, name="Inpainter")
