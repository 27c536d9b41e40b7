"""The Stable Diffusion safety checker (setting ``safe``): which outputs it flags as NSFW.

Its files are the ``safety_checker/`` and ``feature_extractor/`` subfolders of a Stable
Diffusion 1.x diffusers pipeline (CompVis/stable-diffusion-safety-checker and its CLIP
preprocessor config), copied into one folder. Enfugue runs the same model in its pipeline
(``run_safety_checker``); flagged images are not saved and show as ``"nsfw"``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from PIL import Image
from safetensors import SafetensorError
from transformers import CLIPImageProcessor

logger = logging.getLogger(__name__)

SUBFOLDERS = ("safety_checker", "feature_extractor")


class SafetyCheckerError(ValueError):
    """A safety checker folder whose files cannot be loaded."""


class SafetyChecker(NamedTuple):
    model: StableDiffusionSafetyChecker
    feature_extractor: CLIPImageProcessor


def load_safety_checker(
    folder: Path, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> SafetyChecker:
    """The checker in ``folder`` (its two diffusers subfolders), on ``device`` (CPU by default)."""
    missing = [name for name in SUBFOLDERS if not (folder / name).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"no safety checker at {folder}: it needs the subfolders {', '.join(missing)} "
            "(as a Stable Diffusion 1.5 diffusers pipeline ships them)"
        )
    try:
        model = StableDiffusionSafetyChecker.from_pretrained(
            str(folder / "safety_checker"), dtype=dtype, local_files_only=True
        )
        feature_extractor = CLIPImageProcessor.from_pretrained(str(folder / "feature_extractor"), local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as error:
        raise SafetyCheckerError(
            f"the safety checker at {folder} could not be loaded ({type(error).__name__})"
        ) from error
    logger.info("safety checker loaded from %s", folder)
    return SafetyChecker(model.to(device or torch.device("cpu")).eval(), feature_extractor)


def flagged(checker: SafetyChecker, images: list[Image.Image], device: torch.device, dtype: torch.dtype) -> list[bool]:
    """Whether each image shows a concept the checker flags, as diffusers' ``run_safety_checker``
    decides it (``nsfw_content_detected``)."""
    if not images:
        return []
    pixels = checker.feature_extractor([image.convert("RGB") for image in images], return_tensors="pt")
    # The checker blacks out flagged images in this array; only its verdicts are used here.
    placeholders = np.zeros((len(images), 1))
    with torch.inference_mode():
        _, verdicts = checker.model(clip_input=pixels.pixel_values.to(device, dtype), images=placeholders)
    return [bool(verdict) for verdict in verdicts]
