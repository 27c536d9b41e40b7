"""The GPU options of a model role (``acceleration`` of its options in a Serve config): a leaf
module, as the roles read them (deployments/acceleration.py) and the typed builder checks them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, NonNegativeInt


class Acceleration(BaseModel):
    """How a model role runs its models on a GPU (deployments/acceleration.py), set per role in a
    Serve config: ``base: {num_gpus: 1, acceleration: {compile: true}}``. On the CPU only
    ``channels_last: true``, ``compile`` and ``vae_tiling_above`` apply; weights stay float32."""

    model_config = ConfigDict(extra="forbid")

    # The weights' precision on CUDA, unless the precision setting is "full" (float32). bfloat16
    # keeps float32's range (SDXL's VAE then needs no float32 upcast), on GPUs that have it (Ampere on).
    half: Literal["float16", "bfloat16"] = "float16"
    # UNet, VAE and ControlNet in channels-last layout, cuDNN's native one in half precision.
    # None: on CUDA only.
    channels_last: bool | None = None
    # PyTorch's scaled dot-product attention, or xformers' (the gpu extra: pip install
    # 'enfugue-serve[gpu]'; without it the replica does not start, and says so).
    attention: Literal["sdpa", "xformers"] = "sdpa"
    # torch.compile of the UNet, once per model load; each new image size compiles once more (the
    # first job of that size waits for it, about a minute on a GPU), later ones run faster.
    compile: bool = False
    # Images of more pixels than this go through the VAE in tiles, so that a 2048x2048 decode
    # fits in a GPU's memory (tiles are blended at their seams); 0: never.
    vae_tiling_above: NonNegativeInt = 1536 * 1536
