"""Tiny Real-ESRGAN files for tests: spandrel recognises them as ESRGAN, as it does the real ones.

Real-ESRGAN's releases (RealESRGAN_x4plus.pth, ..._anime_6B.pth) are basicsr ``RRDBNet`` state
dicts under "params_ema"; spandrel infers everything from key names and shapes: the number of
blocks from the ``body.N`` indices, the features from ``conv_first``'s output channels, and the
scale from the upsampling convolutions (always two, 4x) divided by basicsr's pixel-unshuffle,
which its x2 model applies to the input (12 = 3 * 2 * 2 input channels).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

__all__ = ["esrgan_state_dict", "write_tiny_esrgan"]

# basicsr's and spandrel's growth channels of a dense block: fixed, not inferred from the file.
GROWTH = 32


def esrgan_state_dict(scale: int = 4, features: int = 8, blocks: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    """A basicsr RRDBNet state dict (Real-ESRGAN's layout) with seeded random weights."""
    if scale not in (2, 4):
        raise ValueError(f"scale must be 2 or 4, not {scale!r}")
    generator = torch.Generator().manual_seed(seed)
    in_channels = 3 * (4 // scale) ** 2  # basicsr's x2 pixel-unshuffles the input by 2

    def conv(name: str, out_channels: int, in_channels: int) -> dict[str, torch.Tensor]:
        # Scaled like PyTorch's default init, so activations neither vanish nor saturate.
        std = (in_channels * 9) ** -0.5
        weight = torch.randn(out_channels, in_channels, 3, 3, generator=generator) * std
        return {f"{name}.weight": weight, f"{name}.bias": torch.zeros(out_channels)}

    state = conv("conv_first", features, in_channels)
    for block in range(blocks):
        for dense in (1, 2, 3):
            prefix = f"body.{block}.rdb{dense}"
            for index in range(1, 5):
                state |= conv(f"{prefix}.conv{index}", GROWTH, features + (index - 1) * GROWTH)
            state |= conv(f"{prefix}.conv5", features, features + 4 * GROWTH)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        state |= conv(name, features, features)
    state |= conv("conv_last", 3, features)
    state["conv_last.bias"] += 0.5  # centre the outputs in [0, 1], where spandrel clamps
    return state


def write_tiny_esrgan(
    folder: Path, name: str = "RealESRGAN_x4plus.pth", scale: int = 4, seed: int = 0, features: int = 8, blocks: int = 1
) -> Path:
    """The tiny model as ``folder/name``: a .pth as Real-ESRGAN ships it, or a flat .safetensors.
    ``features=64, blocks=23`` is RealESRGAN_x4plus's own size."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    state = esrgan_state_dict(scale=scale, features=features, blocks=blocks, seed=seed)
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"params_ema": state}, path)
    return path
