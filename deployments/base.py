"""The Base role: text-to-image and image-to-image on one device, one request at a time.

``BaseRole`` does the work and knows nothing of Ray; the ``Base`` deployment below adds
model multiplexing (replicas keep recently used pipelines and requests are routed to them).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image, DiffusionPipeline
from PIL import Image
from ray import serve

from deployments.pipelines import device_and_dtype, generators, load_pipeline, make_scheduler
from deployments.plan import DiffusionStep
from serve_app.errors import BadRequestError, InvocationCancelled
from storage.files import DataPaths, UnsafePathError, find_model

logger = logging.getLogger(__name__)

PIPELINES_PER_REPLICA = 2


class BaseRole:
    """Runs diffusion steps; reports progress to the Store, which can say stop."""

    def __init__(self, data_dir: str, store: Any) -> None:
        self._paths = DataPaths(Path(data_dir))
        self._store = store
        self.device, self.dtype = device_and_dtype(None)

    def load(self, checkpoint: str) -> DiffusionPipeline:
        try:
            path = find_model(self._paths.models("checkpoint"), checkpoint)
        except UnsafePathError as error:
            raise BadRequestError(f"model: {error}") from error
        if path is None:
            raise BadRequestError(f"model: no checkpoint named {checkpoint!r}")
        logger.info("loading checkpoint %s on %s", checkpoint, self.device)
        return load_pipeline(path, self._paths.configs, self.dtype).to(self.device)

    def generate(
        self, pipeline: DiffusionPipeline, uuid: str, step: DiffusionStep, offset: int, remaining: int
    ) -> list[Image.Image]:
        """Run one step. ``offset`` steps of the plan ran before it and ``remaining`` follow it."""
        scheduler = make_scheduler(pipeline.scheduler.config, step.scheduler, step.seeds[0])
        if step.image is None:
            runner = AutoPipelineForText2Image.from_pipe(pipeline, scheduler=scheduler)
            inputs: dict[str, Any] = {"width": step.width, "height": step.height}
        else:
            runner = AutoPipelineForImage2Image.from_pipe(pipeline, scheduler=scheduler)
            inputs = {"image": step.image, "strength": step.strength}
        runner.set_progress_bar_config(disable=True)
        if not self._report(uuid, offset, offset + step.expected_steps + remaining):
            raise InvocationCancelled(uuid)

        stopped = False

        def on_step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal stopped
            if not self._report(uuid, offset + index + 1, offset + pipe.num_timesteps + remaining):
                stopped = True
                pipe._interrupt = True  # diffusers' own cooperative stop
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
                **inputs,
            )
        if stopped:
            raise InvocationCancelled(uuid)
        return list(result.images)

    def _report(self, uuid: str, step: int, total: int) -> bool:
        return bool(self._store.report_progress.remote(uuid, step, total).result())


@serve.deployment(max_ongoing_requests=1, health_check_period_s=30, graceful_shutdown_timeout_s=60)
class Base:
    def __init__(self, data_dir: str, store: Any) -> None:
        self._role = BaseRole(data_dir, store)

    @serve.multiplexed(max_num_models_per_replica=PIPELINES_PER_REPLICA)
    async def pipeline(self, checkpoint: str) -> DiffusionPipeline:
        return await asyncio.to_thread(self._role.load, checkpoint)

    async def generate(self, uuid: str, step: DiffusionStep, offset: int, remaining: int) -> list[Image.Image]:
        pipeline = await self.pipeline(step.pipeline_key)
        # Diffusers calls block; they run in a thread so the replica keeps answering health checks.
        return await asyncio.to_thread(self._role.generate, pipeline, uuid, step, offset, remaining)

    def check_health(self) -> None:
        if self._role.device.type == "cuda":
            torch.cuda.mem_get_info(self._role.device)  # raises when the device is lost
