"""Chunked (MultiDiffusion) denoising: a canvas larger than the model, in model-size windows.

Each denoising step runs the UNet on the windows' latents, ``batch_size`` windows at a time
(classifier-free guidance doubles the batch), blends the windows' noise predictions into one
full-canvas prediction with feather weights that sum to one at every latent pixel, and takes a
single scheduler step on the full canvas. Stepping once on the whole canvas (rather than once per
window, as diffusers' panorama pipeline does with a copy of the scheduler per window) keeps one
scheduler state, so every diffusers scheduler works, multistep and ancestral ones included.
The text embeddings are computed once, by the pipeline's own ``encode_prompt``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from deployments.acceleration import vae_upcast
from deployments.steps import LATENT_SCALE

Box = tuple[int, int, int, int]  # left, top, right, bottom in pixels


def _spans(size: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Start/end pairs along one side: every ``stride`` px, the last one flush with the far edge."""
    if size <= window:
        return [(0, size)]
    starts = [*range(0, size - window, stride), size - window]
    return [(start, start + window) for start in starts]


def windows(width: int, height: int, window: int, stride: int) -> list[Box]:
    """The window boxes (left, top, right, bottom) covering a ``width`` x ``height`` canvas, row by row."""
    for name, value in (("width", width), ("height", height), ("window", window), ("stride", stride)):
        if value <= 0 or value % LATENT_SCALE:
            raise ValueError(f"`{name}` must be a positive multiple of {LATENT_SCALE}, got {value}")
    if stride > window:
        # Larger strides would leave canvas strips no window denoises.
        raise ValueError(f"`stride` must be at most `window` ({window}), got {stride}")
    return [
        (left, top, right, bottom)
        for top, bottom in _spans(height, window, stride)
        for left, right in _spans(width, window, stride)
    ]


def _ramp(length: int, fade: int, fade_start: bool, fade_end: bool) -> np.ndarray:
    # Positive everywhere, so a latent covered only by fading borders still gets a weight.
    ramp = np.ones(length, dtype=np.float32)
    fade = min(fade, length // 2)
    rising = np.arange(1, fade + 1, dtype=np.float32) / (fade + 1)
    if fade_start and fade:
        ramp[:fade] = rising
    if fade_end and fade:
        ramp[length - fade :] = rising[::-1]
    return ramp


def feather_weights(boxes: list[Box], width: int, height: int, blur: int) -> list[np.ndarray]:
    """Per box, its weights at latent resolution (rows x columns); they sum to one on the canvas.

    A box's weight ramps up over ``blur`` px from each edge inside the canvas (where other windows
    overlap it), not from the canvas' own edges; ``blur`` 0 weighs every window equally there.
    """
    if blur < 0:
        raise ValueError(f"`blur` must be 0 or more, got {blur}")
    fade = blur // LATENT_SCALE
    raw = []
    total = np.zeros((height // LATENT_SCALE, width // LATENT_SCALE), dtype=np.float32)
    for left, top, right, bottom in boxes:
        columns = _ramp((right - left) // LATENT_SCALE, fade, left > 0, right < width)
        rows = _ramp((bottom - top) // LATENT_SCALE, fade, top > 0, bottom < height)
        weight = np.outer(rows, columns)
        total[top // LATENT_SCALE : bottom // LATENT_SCALE, left // LATENT_SCALE : right // LATENT_SCALE] += weight
        raw.append(weight)
    if (total == 0).any():
        raise ValueError(f"the windows do not cover the {width}x{height} canvas")
    return [
        weight / total[top // LATENT_SCALE : bottom // LATENT_SCALE, left // LATENT_SCALE : right // LATENT_SCALE]
        for weight, (left, top, right, bottom) in zip(raw, boxes, strict=True)
    ]


@torch.inference_mode()
def chunked_denoise(
    pipeline: Any,
    *,
    prompt: str,
    negative_prompt: str | None,
    width: int,
    height: int,
    window: int,
    stride: int,
    blur: int,
    num_inference_steps: int,
    guidance_scale: float,
    generator: list[torch.Generator],
    scheduler: Any = None,
    image: Image.Image | None = None,
    strength: float | None = None,
    batch_size: int = 4,
    on_step: Callable[[int, int, torch.Tensor], bool] | None = None,
) -> list[Image.Image]:
    """One image per generator, ``width`` x ``height``, denoised in ``window``-px windows ``stride`` px apart.

    ``pipeline`` is a Stable Diffusion 1.x/2.x or SDXL (base) pipeline; ``scheduler`` a fresh one
    for this run (default: a copy of the pipeline's). With ``image`` (of the canvas size) it is
    image-to-image at ``strength``. ``batch_size`` (image, window) pairs go through the UNet per
    call, twice as many rows with guidance. ``on_step(step_index, total, latents)`` is called after each
    step (index from 0, as diffusers' callbacks count); when it returns True the run stops there
    and an empty list is returned, without decoding: the caller raises its own "stopped".
    """
    # 1. Check the inputs; a fresh scheduler unless given one (schedulers keep per-run state).
    boxes = windows(width, height, window, stride)
    if not generator:
        raise ValueError("`generator` must hold one generator per image, got none")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be 1 or more, got {batch_size}")
    if (image is None) != (strength is None):
        raise ValueError("`image` and `strength` go together: give both for image-to-image, neither for text")
    if image is not None and image.size != (width, height):
        raise ValueError(f"`image` must be the canvas size {width}x{height}, got {image.size[0]}x{image.size[1]}")
    if strength is not None and not (0 < strength <= 1 and int(num_inference_steps * strength) >= 1):
        raise ValueError(f"`strength` must be in (0, 1] and leave at least one of {num_inference_steps} steps")
    if getattr(pipeline.config, "requires_aesthetics_score", False):
        raise ValueError(f"{type(pipeline).__name__} (an SDXL refiner) is not supported; use an SDXL base")
    xl = pipeline.components.get("text_encoder_2") is not None
    if scheduler is None:
        scheduler = type(pipeline.scheduler).from_config(pipeline.scheduler.config)
    device = pipeline._execution_device
    count = len(generator)
    guided = guidance_scale > 1.0

    # 2. Encode the prompt once; every window and image shares the embeddings.
    encoded = pipeline.encode_prompt(
        prompt=prompt,
        device=device,
        num_images_per_prompt=1,
        do_classifier_free_guidance=guided,
        negative_prompt=negative_prompt,
    )
    embeds = torch.cat([encoded[1], encoded[0]]) if guided else encoded[0]  # (uncond, cond) or (cond,)
    pooled = (torch.cat([encoded[3], encoded[2]]) if guided else encoded[2]) if xl else None

    # 3. Timesteps, cut to the last ``strength`` of them for image-to-image (as diffusers' img2img).
    scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = scheduler.timesteps
    if strength is not None:
        start = (num_inference_steps - min(int(num_inference_steps * strength), num_inference_steps)) * scheduler.order
        timesteps = timesteps[start:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)

    # 4. The starting latents, drawing from the generators in the order the pipelines do.
    shape = (count, pipeline.vae.config.latent_channels, height // LATENT_SCALE, width // LATENT_SCALE)
    if image is None:
        latents = randn_tensor(shape, generator=generator, device=device, dtype=embeds.dtype)
        latents = latents * scheduler.init_noise_sigma
    else:
        latents = _encode(pipeline, image, generator, width, height).to(device, embeds.dtype)
        noise = randn_tensor(shape, generator=generator, device=device, dtype=embeds.dtype)
        latents = scheduler.add_noise(latents, noise, timesteps[:1].repeat(count))
    step_options = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}

    # 5. The work list: (image, window) pairs in batches, and each window's blend weights.
    weights = [
        torch.from_numpy(weight).to(device, torch.float32)
        for weight in feather_weights(boxes, width, height, blur)
    ]  # fmt: skip
    pairs = [(sample, index) for sample in range(count) for index in range(len(boxes))]
    batches = [pairs[start : start + batch_size] for start in range(0, len(pairs), batch_size)]
    latent_boxes = [tuple(side // LATENT_SCALE for side in box) for box in boxes]
    time_ids = [_time_ids(pipeline, box, width, height, pooled) for box in boxes] if xl else []

    # 6. Denoise: per step, the UNet on every window, one blended prediction, one scheduler step.
    for step_index, timestep in enumerate(timesteps):
        model_input = scheduler.scale_model_input(latents, timestep)
        prediction = torch.zeros(latents.shape, device=device, dtype=torch.float32)
        for batch in batches:
            crops = []
            for sample_index, index in batch:
                left, top, right, bottom = latent_boxes[index]
                crops.append(model_input[sample_index : sample_index + 1, :, top:bottom, left:right])
            sample, size = torch.cat(crops), len(batch)
            conditions: dict[str, Any] = {}
            if xl:
                ids = torch.cat([time_ids[index] for _, index in batch])
                conditions["added_cond_kwargs"] = {
                    "text_embeds": _per_item(pooled, size, guided),
                    "time_ids": torch.cat([ids, ids]) if guided else ids,
                }
            noise_pred = pipeline.unet(
                torch.cat([sample, sample]) if guided else sample,
                timestep,
                encoder_hidden_states=_per_item(embeds, size, guided),
                return_dict=False,
                **conditions,
            )[0]
            if guided:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + guidance_scale * (cond - uncond)
            for one, (sample_index, index) in zip(noise_pred.float(), batch, strict=True):
                left, top, right, bottom = latent_boxes[index]
                prediction[sample_index, :, top:bottom, left:right] += one * weights[index]
        latents = scheduler.step(prediction.to(latents.dtype), timestep, latents, **step_options, return_dict=False)[0]
        if on_step is not None and on_step(step_index, len(timesteps), latents):
            return []

    # 7. Decode the whole canvas at once.
    return decode(pipeline, latents)


def _per_item(conditioning: torch.Tensor, size: int, guided: bool) -> torch.Tensor:
    """Conditioning rows for a batch of ``size`` windows: the unconditional half first, as the
    latents are doubled (``[windows, windows]``)."""
    if not guided:
        return conditioning.expand(size, *conditioning.shape[1:])
    uncond, cond = conditioning[:1], conditioning[1:]
    return torch.cat([uncond.expand(size, *uncond.shape[1:]), cond.expand(size, *cond.shape[1:])])


def _time_ids(pipeline: Any, box: Box, width: int, height: int, pooled: torch.Tensor) -> torch.Tensor:
    """SDXL's micro-conditioning for one window: a ``window``-size crop at the window's offset
    from a canvas-size original, which is what the window is."""
    left, top, right, bottom = box
    return pipeline._get_add_time_ids(
        (height, width), (top, left), (bottom - top, right - left), pooled.dtype, pooled.shape[-1]
    ).to(pooled.device)


def _encode(
    pipeline: Any, image: Image.Image, generator: list[torch.Generator], width: int, height: int
) -> torch.Tensor:
    """The image's latents, one VAE sample per generator (as diffusers' img2img draws them)."""
    vae = pipeline.vae
    with vae_upcast(vae) as dtype:
        pixels = pipeline.image_processor.preprocess(image, height=height, width=width)
        pixels = pixels.to(pipeline._execution_device, dtype)
        samples = [vae.encode(pixels).latent_dist.sample(one) for one in generator]
    return torch.cat(samples) * vae.config.scaling_factor


def decode(pipeline: Any, latents: torch.Tensor) -> list[Image.Image]:
    """Latents as images, as a pipeline's own last step makes them (a VAE pass)."""
    vae = pipeline.vae
    with vae_upcast(vae) as dtype:
        decoded = vae.decode((latents / vae.config.scaling_factor).to(dtype), return_dict=False)[0]
    return pipeline.image_processor.postprocess(decoded, output_type="pil")
