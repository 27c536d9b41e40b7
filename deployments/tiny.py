"""Tiny random-weight Stable Diffusion models, built in code.

Nothing here is downloaded: every weight comes from a seeded random init, so
the pictures are noise. They keep the real block topology and key layout of
SD1.5, SDXL base and the SDXL refiner, which is what tests and the first-start
demo checkpoint need: the loaders, schedulers and pipelines run exactly as
they would with real weights, in a fraction of a second on a CPU.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
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

# Hidden sizes of the two SDXL text encoders. They must differ: diffusers'
# single-file loader tells the OpenAI CLIP (embedders.0) from the OpenCLIP
# (embedders.1) by comparing position-embedding widths with the model it builds.
CLIP_L_WIDTH = 32
CLIP_G_WIDTH = 64
# OpenCLIP depth: diffusers recognises an SDXL base / refiner file by the key
# "...model.transformer.resblocks.9...", so the tiny OpenCLIP has 10 layers.
CLIP_G_LAYERS = 10
CLIP_G_PROJECTION = 32
SDXL_TIME_EMBED_DIM = 8


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


def _seeded(seed: int, build):
    """Build a module under its own seed without touching the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval()


def _text_config(width: int, layers: int, **extra) -> CLIPTextConfig:
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


def _tiny_vae(seed: int, scaling_factor: float) -> AutoencoderKL:
    # Four blocks, as in SD: three downsamples give the latent scale factor 8.
    return _seeded(
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
    return _seeded(
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
        "vae": _tiny_vae(seed + 1, scaling_factor=0.18215),
        "text_encoder": _seeded(seed + 2, lambda: CLIPTextModel(_text_config(CLIP_L_WIDTH, 2))),
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


def _sdxl_unet(seed: int, refiner: bool) -> UNet2DConditionModel:
    if refiner:
        # The refiner: four levels, attention in the middle two, conditioned on
        # OpenCLIP alone; its time ids carry an aesthetic score (5 values, not 6).
        blocks = {
            "down_block_types": (
                "DownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ),
            "up_block_types": (
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "UpBlock2D",
            ),
            "block_out_channels": (8, 16, 16, 16),
            "cross_attention_dim": CLIP_G_WIDTH,
            "projection_class_embeddings_input_dim": CLIP_G_PROJECTION + 5 * SDXL_TIME_EMBED_DIM,
        }
    else:
        blocks = {
            "down_block_types": (
                "DownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
            ),
            "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            "block_out_channels": (8, 16, 16),
            "cross_attention_dim": CLIP_L_WIDTH + CLIP_G_WIDTH,
            "projection_class_embeddings_input_dim": CLIP_G_PROJECTION + 6 * SDXL_TIME_EMBED_DIM,
        }
    return _seeded(
        seed,
        lambda: UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            layers_per_block=2,
            norm_num_groups=4,
            attention_head_dim=2,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=SDXL_TIME_EMBED_DIM,
            **blocks,
        ),
    )


def tiny_sdxl_components(seed: int = 0, refiner: bool = False) -> dict:
    """Components of an SDXL base (or, with `refiner=True`, refiner) shaped pipeline."""
    clip_g_config = _text_config(CLIP_G_WIDTH, CLIP_G_LAYERS, projection_dim=CLIP_G_PROJECTION)
    components = {
        "unet": _sdxl_unet(seed, refiner),
        "vae": _tiny_vae(seed + 1, scaling_factor=0.13025),
        "text_encoder": None,
        "tokenizer": None,
        "text_encoder_2": _seeded(seed + 3, lambda: CLIPTextModelWithProjection(clip_g_config)),
        "tokenizer_2": tiny_tokenizer(),
        "scheduler": EulerDiscreteScheduler(
            **SD_BETAS,
            num_train_timesteps=1000,
            steps_offset=1,
            timestep_spacing="leading",
        ),
        "image_encoder": None,
        "feature_extractor": None,
    }
    if not refiner:
        components["text_encoder"] = _seeded(seed + 2, lambda: CLIPTextModel(_text_config(CLIP_L_WIDTH, 2)))
        components["tokenizer"] = tiny_tokenizer()
    return components


def tiny_sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    return StableDiffusionXLPipeline(**tiny_sdxl_components(seed))


def tiny_sdxl_refiner_pipeline(seed: int = 0) -> StableDiffusionXLImg2ImgPipeline:
    return StableDiffusionXLImg2ImgPipeline(
        **tiny_sdxl_components(seed, refiner=True),
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
    )


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
