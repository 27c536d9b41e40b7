"""How a model role runs its models on its device: the options a Serve config sets per role
(``acceleration`` of a role's options, serve_app.config.Acceleration).

A model is laid out once, when it loads: its weights' precision, channels-last memory layout,
its attention, and its UNet compiled. VAE tiling depends on each job's size, so it is switched for
the job's run.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from typing import Any

import torch
from diffusers import DiffusionPipeline

from serve_app.acceleration_schemas import Acceleration

DEFAULT = Acceleration()
_HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def require_attention(acceleration: Acceleration, device: torch.device) -> None:
    """At a replica's start: the attention chosen runs here (else every model load would fail)."""
    if acceleration.attention != "xformers":
        return
    if importlib.util.find_spec("xformers") is None:
        raise RuntimeError(
            "acceleration.attention is 'xformers', which is not installed on this node: install the gpu "
            "extra (pip install 'enfugue-serve[gpu]') or choose 'sdpa'"
        )
    if device.type != "cuda":
        raise RuntimeError(f"acceleration.attention 'xformers' runs on CUDA only, and this replica runs on {device}")


def device_and_dtype(precision: str | None, acceleration: Acceleration = DEFAULT) -> tuple[torch.device, torch.dtype]:
    """CUDA in half precision (``acceleration.half``) when available, unless ``precision`` is "full";
    else the CPU, in float32."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.float32 if precision == "full" else _HALF[acceleration.half]
    return torch.device("cpu"), torch.float32


def place(model: Any, device: torch.device, acceleration: Acceleration = DEFAULT) -> Any:
    """A pipeline (or one model of one, a ControlNet) on ``device``, laid out as ``acceleration`` says.

    Channels-last suits the convolutions of the UNet, the VAE and a ControlNet (cuDNN's native
    layout in half precision). Attention is PyTorch's SDPA unless xformers is chosen. A compiled
    UNet keeps its module (diffusers reads its config), so the pipeline runs it as before."""
    model = model.to(device)
    parts = _parts(model)
    channels_last = acceleration.channels_last if acceleration.channels_last is not None else device.type == "cuda"
    if channels_last:
        for part in parts:
            part.to(memory_format=torch.channels_last)
    if acceleration.attention == "xformers":
        for part in parts:
            part.enable_xformers_memory_efficient_attention()
    if acceleration.compile and isinstance(model, DiffusionPipeline):
        model.unet.compile()
    return model


def _parts(model: Any) -> list[torch.nn.Module]:
    if not isinstance(model, DiffusionPipeline):
        return [model]
    return [part for name in ("unet", "vae", "controlnet") if (part := getattr(model, name, None)) is not None]


@contextlib.contextmanager
def vae_tiled(vae: Any, size: tuple[int, int], acceleration: Acceleration = DEFAULT) -> Iterator[bool]:
    """The VAE in tiles while a job of ``size`` (width, height) runs, when it has more pixels than
    ``acceleration.vae_tiling_above``; yields whether it is."""
    above = acceleration.vae_tiling_above
    if not above or size[0] * size[1] <= above or not hasattr(vae, "enable_tiling"):
        yield False
        return
    vae.enable_tiling()
    try:
        yield True
    finally:
        vae.disable_tiling()


@contextlib.contextmanager
def vae_upcast(vae: Any) -> Iterator[torch.dtype]:
    """The VAE in float32 while in use when its config says float16 overflows in it (SDXL's VAE;
    bfloat16 has float32's range); yields the dtype its inputs take."""
    if not (getattr(vae.config, "force_upcast", False) and vae.dtype == torch.float16):
        yield vae.dtype
        return
    vae.to(torch.float32)
    try:
        yield torch.float32
    finally:
        vae.to(torch.float16)
