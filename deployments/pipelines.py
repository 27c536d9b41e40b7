"""Loading checkpoints offline, and the per-request pieces: scheduler, generators, precision.

Checkpoints are diffusers folders or single files in the original LDM key layout. A single
file is loaded with a local diffusers config folder: its "<stem>.config" sidecar when it has
one (non-standard shapes), else the generated folder of its detected family.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import diffusers
import torch
from diffusers import AutoencoderKL, ControlNetModel, DiffusionPipeline
from diffusers.loaders.single_file_utils import (
    SingleFileComponentError,
    infer_diffusers_model_type,
    load_single_file_checkpoint,
)
from safetensors import safe_open

from deployments.model_configs import FAMILIES, ensure_config_folder
from serve_app.errors import BadRequestError
from storage.files import sidecar_config

logger = logging.getLogger(__name__)

# Enfugue's scheduler names -> diffusers classes and the options they need here.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
    "dpmsm": ("DPMSolverMultistepScheduler", {}),
    "dpmss": ("DPMSolverSinglestepScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpmd": ("KDPM2DiscreteScheduler", {}),
    "adpmd": ("KDPM2AncestralDiscreteScheduler", {}),
    "dpmsde": ("DPMSolverSDEScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lmsd": ("LMSDiscreteScheduler", {}),
    # Without skip_prk_steps PNDM fails at low step counts.
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "eds": ("EulerDiscreteScheduler", {}),
    "eads": ("EulerAncestralDiscreteScheduler", {}),
}

# The text-to-image pipelines the base role serves, by the class name in model_index.json.
TEXT_TO_IMAGE = frozenset({"StableDiffusionPipeline", "StableDiffusionXLPipeline"})
# And the inpainting ones (a 9-channel UNet) the inpainter role serves besides those, and the
# image-to-image only ones (SDXL refiners) the refiner role serves.
INPAINTING = frozenset({"StableDiffusionInpaintPipeline", "StableDiffusionXLInpaintPipeline"})
REFINING = frozenset({"StableDiffusionXLImg2ImgPipeline"})


_LDM_UNET_INPUT = "model.diffusion_model.input_blocks.0.0.weight"


class _Shape(NamedTuple):
    """Stands in for a tensor where only ``.shape`` is read (family detection)."""

    shape: tuple[int, ...]


def detect_family(path: Path) -> str:
    """The checkpoint family (diffusers' model type) from tensor names and shapes."""
    if path.suffix.lower() == ".safetensors":
        with safe_open(str(path), framework="pt") as handle:
            checkpoint: dict[str, Any] = {
                key: _Shape(tuple(handle.get_slice(key).get_shape()))
                for key in handle.keys()  # noqa: SIM118
            }
    else:
        checkpoint = load_single_file_checkpoint(str(path), local_files_only=True)
    unknown = BadRequestError(f"{path.name}: not a Stable Diffusion checkpoint in the original (LDM) layout")
    # diffusers' detection falls back to "v1" for anything; a UNet must be there at least.
    if _LDM_UNET_INPUT not in checkpoint:
        raise unknown
    try:
        family = infer_diffusers_model_type(checkpoint)
    except Exception as error:  # diffusers raises on layouts it does not know
        raise unknown from error
    if family not in FAMILIES:
        raise BadRequestError(f"{path.name}: a {family!r} checkpoint; supported: {', '.join(FAMILIES)}")
    return family


def _class_name(config_folder: Path) -> str:
    return str(json.loads((config_folder / "model_index.json").read_text())["_class_name"])


def _without_safety_checker(class_name: str) -> dict[str, Any]:
    # The SD 1.x/2.x classes take a safety checker; it is applied separately (setting `safe`).
    return {} if "XL" in class_name else {"safety_checker": None, "requires_safety_checker": False}


def load_pipeline(
    path: Path,
    configs_root: Path,
    dtype: torch.dtype,
    accepted: frozenset[str] = TEXT_TO_IMAGE,
    purpose: str = "generate from text",
) -> DiffusionPipeline:
    """The pipeline of the checkpoint at ``path``, one of the ``accepted`` classes, with no
    network access."""
    if path.is_dir():
        config_folder, single_file = path, False
    else:
        config_folder = sidecar_config(path) or ensure_config_folder(detect_family(path), configs_root)
        single_file = True
    class_name = _class_name(config_folder)
    if class_name not in accepted:
        raise BadRequestError(
            f"{path.name}: a {class_name} checkpoint cannot {purpose}; use a {' or '.join(sorted(accepted))} checkpoint"
        )
    pipeline_class = getattr(diffusers, class_name)
    options = {"dtype": dtype, "local_files_only": True, **_without_safety_checker(class_name)}
    try:
        if single_file:
            return pipeline_class.from_single_file(str(path), config=str(config_folder), **options)
        return pipeline_class.from_pretrained(str(path), **options)
    except (OSError, ValueError, KeyError, RuntimeError, SingleFileComponentError) as error:
        # Missing or mismatched weights: the file is the problem, not the server.
        raise BadRequestError(f"{path.name}: could not be loaded ({type(error).__name__}: {error})"[:500]) from error


def load_vae(path: Path, replaced: AutoencoderKL, dtype: torch.dtype) -> AutoencoderKL:
    """The VAE at ``path`` to take the place of ``replaced``, whose config a single file is read with."""
    return _load_model(AutoencoderKL, path, replaced, dtype, "vae")


def load_controlnet(path: Path, unet: Any, dtype: torch.dtype) -> ControlNetModel:
    """The ControlNet at ``path`` for ``unet``; a single file is read with the config a ControlNet
    for that UNet has."""
    with torch.device("meta"):  # the architecture only: no memory for weights
        template = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
    return _load_model(ControlNetModel, path, template, dtype, "controlnet")


def _load_model(model_class: Any, path: Path, template: Any, dtype: torch.dtype, field: str) -> Any:
    """One diffusers model (a VAE, a ControlNet): a diffusers folder, or a single file in original
    or diffusers keys read with ``template``'s config (no network access)."""
    try:
        if path.is_dir():
            return model_class.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True)
        with tempfile.TemporaryDirectory() as config:
            template.save_config(config)
            return model_class.from_single_file(str(path), config=config, torch_dtype=dtype, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, SingleFileComponentError) as error:
        raise BadRequestError(
            f"{field}: {path.name} could not be loaded ({type(error).__name__}: {error})"[:500]
        ) from error


def make_scheduler(config: Any, name: str | None, seed: int) -> Any:
    """A fresh scheduler for one request: schedulers keep per-run state and are not shareable."""
    if name is None:
        class_name, options = config["_class_name"], {}
    else:
        class_name, options = SCHEDULERS[name]
    scheduler_class = getattr(diffusers, class_name)
    if class_name == "DPMSolverSDEScheduler":
        # Its Brownian-tree noise is seeded separately from the generator; unseeded it is random.
        options = {**options, "noise_sampler_seed": seed}
    scheduler = scheduler_class.from_config(config, **options)
    if getattr(scheduler.config, "clip_sample", False):
        # Stable Diffusion is not sampled with clipping; the text-to-image pipelines switch it off
        # themselves, others (ControlNet, ...) do not: switched off here, they all agree.
        scheduler.register_to_config(clip_sample=False)
    return scheduler


def generators(seeds: tuple[int, ...]) -> list[torch.Generator]:
    """One CPU generator per sample: the same seed gives the same noise on any device."""
    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
