"""The first-start demo checkpoint: a tiny random-weight SD1.5-shaped model, built in code.

Nothing here is downloaded: every weight comes from a seeded random init, so the pictures
are noise. It keeps SD1.5's block topology and key layout, so a fresh data folder can run an
invocation end to end (loaders, schedulers and pipelines run exactly as with real weights,
in a fraction of a second on a CPU). Tests build their tiny models on these pieces.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
)

DEMO_CHECKPOINT_NAME = "tiny-random-demo-noise-only"

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
# 256 byte symbols + their end-of-word forms, then the two specials (CLIP's order).
BOS_ID = 512
EOS_ID = 513
VOCAB_SIZE = 514
MAX_TOKENS = 77  # CLIP's context length; pipelines pad prompts to it

# The beta schedule every SD1.x / SDXL checkpoint was trained with.
SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}

# The tiny CLIP text encoder's width (SD1.5's cross-attention width, scaled down).
CLIP_L_WIDTH = 32


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible map from bytes to printable unicode symbols."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in codes), strict=True))


def _write_tokenizer_files(folder: Path) -> None:
    symbols = list(_bytes_to_unicode().values())
    vocab_tokens = symbols + [symbol + "</w>" for symbol in symbols] + [BOS_TOKEN, EOS_TOKEN]
    vocab = {token: index for index, token in enumerate(vocab_tokens)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    # No merges: every word tokenizes to its characters. Enough for a tokenizer
    # that must only produce valid ids of the right length.
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")


def tiny_tokenizer(folder: Path | None = None) -> CLIPTokenizer:
    """A CLIP-format byte-level BPE tokenizer; files go to `folder` or a temp dir."""
    if folder is not None:
        _write_tokenizer_files(folder)
        return CLIPTokenizer.from_pretrained(str(folder), model_max_length=MAX_TOKENS)
    with tempfile.TemporaryDirectory(prefix="tiny-tokenizer-") as temp:
        # The tokenizers backend holds the vocabulary in memory once loaded.
        _write_tokenizer_files(Path(temp))
        return CLIPTokenizer.from_pretrained(temp, model_max_length=MAX_TOKENS)


def seeded(seed: int, build):
    """Build a module under its own seed without touching the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval()


def text_config(width: int, layers: int, **extra) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=width,
        intermediate_size=width * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=EOS_ID,
        **extra,
    )


def tiny_vae(seed: int, scaling_factor: float) -> AutoencoderKL:
    # Four blocks, as in SD: three downsamples give the latent scale factor 8.
    return seeded(
        seed,
        lambda: AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 16, 16),
            layers_per_block=2,
            norm_num_groups=4,
            latent_channels=4,
            sample_size=64,
            scaling_factor=scaling_factor,
            force_upcast=False,
        ),
    )


def _sd15_unet(seed: int, in_channels: int) -> UNet2DConditionModel:
    return seeded(
        seed,
        lambda: UNet2DConditionModel(
            sample_size=8,
            in_channels=in_channels,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            block_out_channels=(8, 8, 16, 16),
            layers_per_block=2,
            norm_num_groups=4,
            cross_attention_dim=CLIP_L_WIDTH,
            attention_head_dim=2,
        ),
    )


def tiny_sd15_components(seed: int = 0, in_channels: int = 4) -> dict:
    """Components of an SD1.5-shaped pipeline; `in_channels=9` for inpainting."""
    return {
        "unet": _sd15_unet(seed, in_channels),
        "vae": tiny_vae(seed + 1, scaling_factor=0.18215),
        "text_encoder": seeded(seed + 2, lambda: CLIPTextModel(text_config(CLIP_L_WIDTH, 2))),
        "tokenizer": tiny_tokenizer(),
        "scheduler": PNDMScheduler(
            **SD_BETAS,
            num_train_timesteps=1000,
            set_alpha_to_one=False,
            skip_prk_steps=True,
            steps_offset=1,
        ),
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
    }


def tiny_sd15_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    return StableDiffusionPipeline(**tiny_sd15_components(seed), requires_safety_checker=False)


def write_demo_checkpoint(checkpoint_dir: Path) -> Path:
    """Save the tiny SD1.5 pipeline as a diffusers folder; return the folder.

    Written beside the target and renamed into place, so an interrupted first start never
    leaves a half-written folder that looks like a checkpoint.
    """
    folder = Path(checkpoint_dir) / DEMO_CHECKPOINT_NAME
    partial = Path(tempfile.mkdtemp(prefix=".demo-", dir=checkpoint_dir))
    try:
        tiny_sd15_pipeline().save_pretrained(str(partial), safe_serialization=True)
        partial.chmod(0o755)
        partial.rename(folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder
