"""The Base, Inpainter and Refiner roles: ``Diffuse``, ``Inpaint`` and ``Refine`` steps on one device.

``BaseRole`` does the work and knows nothing of Ray; ``Base`` is its deployment, in the shell
every role shares (``deployments.role``). The Inpainter is the same work on the checkpoints an
inpainter is configured with (inpainting ones with a 9-channel UNet, or any other), and the
Refiner on the refiner's (SDXL refiners); each in its own deployment so that it scales and holds
its models apart from the base.
"""

from __future__ import annotations

import gc
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    AutoPipelineForText2Image,
    ControlNetModel,
    DiffusionPipeline,
)
from PIL import Image

from deployments.acceleration import device_and_dtype, place, require_attention, vae_tiled
from deployments.adapters import applied
from deployments.annotators import Annotator
from deployments.canvas import paste_back
from deployments.control import ANNOTATOR_FILES, inpaint_condition
from deployments.multidiffusion import chunked_denoise, decode
from deployments.pipelines import (
    INPAINTING,
    REFINING,
    TEXT_TO_IMAGE,
    generators,
    load_controlnet,
    load_pipeline,
    load_vae,
    make_scheduler,
)
from deployments.role import Reporter, Stopped, model_file, role_deployment
from deployments.safety import SafetyChecker, SafetyCheckerError, flagged, load_safety_checker
from deployments.steps import Diffuse, Inpaint, ModelKey, Refine
from serve_app.acceleration_schemas import Acceleration
from serve_app.errors import BadRequestError
from storage.files import DataPaths
from storage.shared import SAFETY, shared_storage

logger = logging.getLogger(__name__)

# Windows of a chunked canvas the UNet takes at once (classifier-free guidance doubles it).
CHUNK_BATCH = 4


@dataclass
class Loaded:
    """What a role keeps loaded for a model id: the pipeline, and its ControlNet and annotator if
    the id has them."""

    pipeline: DiffusionPipeline
    controlnet: ControlNetModel | None = None
    annotator: Annotator | None = None

    def __del__(self) -> None:
        """Serve calls this when its replica drops the model for another (the least recently used
        goes): the weights' device memory is given back now, not kept in PyTorch's cache, so that
        the next model (or another replica on the same GPU) has it. (Python calls it again when
        the object goes: by then there is nothing left to give back.)"""
        if "pipeline" not in self.__dict__:
            return
        for name in ("pipeline", "controlnet", "annotator"):
            self.__dict__.pop(name, None)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class BaseRole:
    """Loads checkpoints by name and runs any denoising step on them."""

    # The pipeline classes (model_index.json) this role loads, and what they are for.
    accepts: frozenset[str] = TEXT_TO_IMAGE
    purpose = "generate from text"

    def __init__(self, data_dir: str, storage_url: str | None = None, acceleration: Acceleration | None = None) -> None:
        """Models come from ``storage_url`` (else ``data_dir``); generated configs stay in ``data_dir``.
        ``acceleration``: how the models run on the device (deployments/acceleration.py)."""
        self._acceleration = acceleration or Acceleration()
        self._paths = DataPaths(Path(data_dir))
        self._storage = shared_storage(data_dir, storage_url)
        self.device, _ = device_and_dtype(None, self._acceleration)
        require_attention(self._acceleration, self.device)
        self._checker: SafetyChecker | None = None

    def load(self, model_id: str) -> Loaded:
        """``model_id`` names the checkpoint in the checkpoint folder, the VAE in the vae folder
        that replaces its own, the ControlNet in the controlnet folder and the annotator of its
        kind in the annotators folder, if any, and the precision the weights are loaded in
        (``ModelKey``)."""
        key = ModelKey.decode(model_id)
        _, dtype = device_and_dtype(key.precision, self._acceleration)
        path = self._find("checkpoint", key.checkpoint, "model")
        logger.info("loading checkpoint %s on %s in %s", model_id, self.device, dtype)
        pipeline = load_pipeline(path, self._paths.configs, dtype, self.accepts, self.purpose)
        if key.vae is not None:
            pipeline.vae = load_vae(self._find("vae", key.vae, "vae"), pipeline.vae, dtype)
        controlnet = None
        if key.controlnet is not None:
            found = self._find("controlnet", key.controlnet, "controlnet")
            controlnet = place(load_controlnet(found, pipeline.unet, dtype), self.device, self._acceleration)
        annotator = None
        if key.annotator is not None:
            files = [self._find("annotators", name, "controlnet") for name in ANNOTATOR_FILES[key.annotator]]
            annotator = Annotator(key.annotator, files, self.device)
        return Loaded(place(pipeline, self.device, self._acceleration), controlnet, annotator)

    def _find(self, kind: str, name: str, field: str) -> Path:
        return model_file(self._storage, kind, name, field)

    def run(
        self,
        loaded: Loaded,
        step: Diffuse | Inpaint | Refine,
        inputs: list[Image.Image],
        reporter: Reporter,
    ) -> list[Image.Image | None]:
        if loaded.annotator is not None:  # the control images, last of the inputs, made here
            count = step.control_count
            inputs = [*inputs[:-count], *(loaded.annotator(photo) for photo in inputs[-count:])]
        with vae_tiled(loaded.pipeline.vae, step.diffusion_size, self._acceleration):
            if isinstance(step, Diffuse) and step.chunked and step.controlnet is None:
                with applied(loaded.pipeline, step, self._storage):
                    outputs = _chunked(loaded.pipeline, step, inputs, reporter)
            else:
                outputs = self._pipeline_run(loaded, step, inputs, reporter)
        # Diffused scaled up to the model's size (scale_to_model_size): back to the canvas.
        outputs = [
            output if output.size == step.size else output.resize(step.size, Image.Resampling.LANCZOS)
            for output in outputs
        ]
        return self._withheld(outputs) if step.safe else list(outputs)

    def _pipeline_run(
        self, loaded: Loaded, step: Diffuse | Inpaint | Refine, inputs: list[Image.Image], reporter: Reporter
    ) -> list[Image.Image]:
        """The step as one call of the diffusers pipeline for its kind."""
        runner, arguments = _runner(loaded, step, inputs)
        runner.set_progress_bar_config(disable=True)

        def on_step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            done, every = index + 1, step.intermediate_steps
            reporter.progress(done, pipe.num_timesteps)
            if every and done % every == 0 and done < pipe.num_timesteps:
                reporter.intermediate(done, decode(pipe, tensors["latents"]))
            if reporter.stopped:
                pipe._interrupt = True  # diffusers' own cooperative stop, before the next step
            return tensors

        with applied(loaded.pipeline, step, self._storage), torch.inference_mode():
            result = runner(
                num_inference_steps=step.num_inference_steps,
                guidance_scale=step.guidance_scale,
                generator=generators(step.seeds),
                callback_on_step_end=on_step_end,
                output_type="pil",
                **arguments,
            )
        if reporter.stopped:
            raise Stopped
        outputs = list(result.images)
        if isinstance(step, Inpaint):
            count = len(outputs) if step.per_image else 1
            images, repaints = inputs[:count], inputs[count : 2 * count]
            if not step.per_image:  # one source and mask for every seed
                images, repaints = images * len(outputs), repaints * len(outputs)
            outputs = [
                paste_back(image, output, repaint)
                for image, output, repaint in zip(images, outputs, repaints, strict=True)
            ]
        return outputs

    def _withheld(self, images: list[Image.Image]) -> list[Image.Image | None]:
        """The images, None in place of those the safety checker flags (when its files are present)."""
        if self._checker is None:
            folder = self._storage.local_folder(SAFETY)
            if folder is None:
                return list(images)
            try:
                self._checker = load_safety_checker(folder, self.device)
            except (FileNotFoundError, SafetyCheckerError) as error:
                raise BadRequestError(f"safe: {error}; fix or remove the safety folder, or turn safe off") from error
        verdicts = flagged(self._checker, images, self.device, self._checker.model.dtype)
        return [None if verdict else image for image, verdict in zip(images, verdicts, strict=True)]

    def check_health(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.mem_get_info(self.device)  # raises when the device is lost


def _runner(loaded: Loaded, step: Diffuse | Inpaint | Refine, inputs: list[Image.Image]) -> tuple[Any, dict[str, Any]]:
    """The pipeline for the step's kind (sharing the loaded one's components) and its arguments."""
    pipeline = loaded.pipeline
    components: dict[str, Any] = {"scheduler": make_scheduler(pipeline.scheduler.config, step.scheduler, step.seeds[0])}
    control: dict[str, Any] = {}
    if step.controlnet is not None:
        # The control images come after the step's other inputs: one, or one per source image.
        count = step.control_count
        inputs, conditions = inputs[:-count], inputs[-count:]
        components["controlnet"] = loaded.controlnet
        control["controlnet_conditioning_scale"] = step.conditioning_scale
        if step.controlnet == "inpaint":
            control_input: Any = torch.from_numpy(inpaint_condition(inputs[0], inputs[1])).permute(0, 3, 1, 2)
        else:
            control_input = conditions[0] if count == 1 else conditions
    negative = step.negative_prompt or None
    # One prompt, one image per seed.
    batch: dict[str, Any] = {
        "prompt": step.prompt,
        "negative_prompt": negative,
        "num_images_per_prompt": len(step.seeds),
    }
    if isinstance(step, Refine):
        runner = AutoPipelineForImage2Image.from_pipe(pipeline, **components)
        # One image per seed, each with its own prompt row.
        count = len(inputs)
        arguments: dict[str, Any] = {
            "prompt": [step.prompt] * count, "negative_prompt": [negative] * count if negative else None,
            "num_images_per_prompt": 1, "image": inputs, "strength": step.strength,
        }  # fmt: skip
        if "aesthetic_score" in inspect.signature(runner.__call__).parameters:  # SDXL image-to-image
            arguments.update(
                aesthetic_score=step.aesthetic_score, negative_aesthetic_score=step.negative_aesthetic_score
            )
        return runner, arguments
    if isinstance(step, Inpaint):
        runner = AutoPipelineForInpainting.from_pipe(pipeline, **components)
        strength = step.strength if step.strength is not None else 1.0
        width, height = step.diffusion_size
        size = {"width": width, "height": height}
        if control:
            control["control_image"] = control_input
        if step.per_image:  # one canvas and its repaint mask per seed, one prompt row each
            count = len(step.seeds)
            images = {"image": inputs[:count], "mask_image": inputs[count:]}
            batch = {
                "prompt": [step.prompt] * count, "negative_prompt": [negative] * count if negative else None,
                "num_images_per_prompt": 1,
            }  # fmt: skip
        else:
            images = {"image": inputs[0], "mask_image": inputs[1]}
        return runner, {**batch, **size, **control, **images, "strength": strength}
    if inputs:  # one source image for every seed, or one per seed
        runner = AutoPipelineForImage2Image.from_pipe(pipeline, **components)
        if control:
            control["control_image"] = control_input
        if step.per_image:  # one prompt row per image
            count = len(inputs)
            batch = {
                "prompt": [step.prompt] * count, "negative_prompt": [negative] * count if negative else None,
                "num_images_per_prompt": 1,
            }  # fmt: skip
        return runner, {**batch, **control, "image": inputs if step.per_image else inputs[0], "strength": step.strength}
    runner = AutoPipelineForText2Image.from_pipe(pipeline, **components)
    if control:
        control["image"] = control_input  # text-to-image ControlNet pipelines call it `image`
    width, height = step.diffusion_size
    return runner, {**batch, **control, "width": width, "height": height}


def _chunked(
    pipeline: DiffusionPipeline, step: Diffuse, inputs: list[Image.Image], reporter: Reporter
) -> list[Image.Image]:
    """A canvas larger than the model, denoised in windows (deployments/multidiffusion.py); with
    one source per seed, one run per seed."""

    def on_step(index: int, total: int, latents: torch.Tensor) -> bool:
        done, every = index + 1, step.intermediate_steps
        reporter.progress(done, total)
        if every and done % every == 0 and done < total:
            reporter.intermediate(done, decode(pipeline, latents))
        return reporter.stopped

    scheduler_name = step.multi_scheduler or step.scheduler
    width, height = step.diffusion_size
    arguments: dict[str, Any] = {
        "prompt": step.prompt, "negative_prompt": step.negative_prompt or None, "width": width, "height": height,
        "window": step.window, "stride": step.chunking_size, "blur": step.chunking_blur,
        "num_inference_steps": step.num_inference_steps, "guidance_scale": step.guidance_scale,
        "batch_size": CHUNK_BATCH, "on_step": on_step,
    }  # fmt: skip
    runs = [(list(step.seeds), inputs[0] if inputs else None)]
    if step.per_image:
        runs = [([seed], image) for seed, image in zip(step.seeds, inputs, strict=True)]
    outputs = []
    for seeds, image in runs:
        scheduler = make_scheduler(pipeline.scheduler.config, scheduler_name, seeds[0])
        images = chunked_denoise(
            pipeline, generator=generators(tuple(seeds)), scheduler=scheduler, image=image,
            strength=step.strength if image is not None else None, **arguments,
        )  # fmt: skip
        if reporter.stopped:
            raise Stopped
        outputs += images
    return outputs


class InpainterRole(BaseRole):
    """The inpainter's checkpoints: inpainting ones besides the text-to-image ones."""

    accepts = TEXT_TO_IMAGE | INPAINTING
    purpose = "inpaint"


class RefinerRole(BaseRole):
    """The refiner's checkpoints: SDXL refiners (image-to-image only) besides text-to-image ones."""

    accepts = TEXT_TO_IMAGE | REFINING
    purpose = "refine"


Base = role_deployment(BaseRole, name="Base")
Inpainter = role_deployment(InpainterRole, name="Inpainter")
Refiner = role_deployment(RefinerRole, name="Refiner")
