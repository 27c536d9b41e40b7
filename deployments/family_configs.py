"""The diffusers configs of each Stable Diffusion family, as the hub repos have them.

Data only: ``model_configs`` writes them out as config folders. A tokenizer entry is a
(pad token, name_or_path) pair; ``model_configs`` builds its files from the vendored BPE.
"""

from __future__ import annotations

from typing import Any

_CA_DOWN, _CA_UP = "CrossAttnDownBlock2D", "CrossAttnUpBlock2D"
_SD_BLOCKS = {
    "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": [_CA_DOWN, _CA_DOWN, _CA_DOWN, "DownBlock2D"],
    "up_block_types": ["UpBlock2D", _CA_UP, _CA_UP, _CA_UP],
}
_UNET_COMMON = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "center_input_sample": False,
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
}
_SD1_UNET = {
    **_UNET_COMMON,
    **_SD_BLOCKS,
    "_diffusers_version": "0.6.0",
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
    "sample_size": 64,
}
_SD2_UNET = {
    **_UNET_COMMON,
    **_SD_BLOCKS,
    "attention_head_dim": [5, 10, 20, 20],
    "cross_attention_dim": 1024,
    "dual_cross_attention": False,
    "use_linear_projection": True,
}
# The 0.19-era SDXL exports list every UNet argument.
_SDXL_UNET_ALL_ARGS = {
    **_UNET_COMMON,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_norm": None,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "mid_block_only_cross_attention": None,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "upcast_attention": None,
    "use_linear_projection": True,
}
_SDXL_UNET = {
    **_SDXL_UNET_ALL_ARGS,
    "_diffusers_version": "0.19.0.dev0",
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,  # CLIP-L 768 + OpenCLIP bigG 1280
    "down_block_types": ["DownBlock2D", _CA_DOWN, _CA_DOWN],
    "projection_class_embeddings_input_dim": 2816,  # pooled 1280 + 6 time ids x 256
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": [_CA_UP, _CA_UP, "UpBlock2D"],
}
_SDXL_REFINER_UNET = {
    **_SDXL_UNET_ALL_ARGS,
    "_diffusers_version": "0.19.0.dev0",
    "attention_head_dim": [6, 12, 24, 24],
    "block_out_channels": [384, 768, 1536, 1536],
    "cross_attention_dim": 1280,  # OpenCLIP bigG only
    "down_block_types": ["DownBlock2D", _CA_DOWN, _CA_DOWN, "DownBlock2D"],
    "projection_class_embeddings_input_dim": 2560,  # pooled 1280 + 5 ids (aesthetic score) x 256
    "transformer_layers_per_block": 4,
    "up_block_types": ["UpBlock2D", _CA_UP, _CA_UP, "UpBlock2D"],
}

_VAE_COMMON = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
# SD1/SD2 VAEs omit scaling_factor: diffusers' default 0.18215 is theirs.
_SDXL_VAE = {
    **_VAE_COMMON,
    "_diffusers_version": "0.20.0.dev0",
    "_name_or_path": "../sdxl-vae/",
    "force_upcast": True,  # the SDXL VAE overflows in float16
    "sample_size": 1024,
    "scaling_factor": 0.13025,
}

_TEXT_COMMON = {
    "architectures": ["CLIPTextModel"],
    "attention_dropout": 0.0,
    # CLIP's text config defaults; the real ids come from the tokenizer.
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "pad_token_id": 1,
    "vocab_size": 49408,
}
_CLIP_L = {  # OpenAI CLIP ViT-L/14 text tower (SD1.x, first SDXL encoder)
    **_TEXT_COMMON,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
}
_OPEN_CLIP_H = {  # OpenCLIP ViT-H/14, penultimate layer: SD2 drops the last of 24
    **_TEXT_COMMON,
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "projection_dim": 512,
}
_OPEN_CLIP_BIGG = {  # OpenCLIP ViT-bigG/14 with its text projection (SDXL)
    **_TEXT_COMMON,
    "architectures": ["CLIPTextModelWithProjection"],
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
}

_BETAS = {"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085}
_SD_SCHEDULER = {
    **_BETAS,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
_SDXL_SCHEDULER = {
    **_SD_SCHEDULER,
    "_class_name": "EulerDiscreteScheduler",
    "interpolation_type": "linear",
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "timestep_spacing": "leading",
    "use_karras_sigmas": False,
}

_NONE = [None, None]
_TOK = ["transformers", "CLIPTokenizer"]
_SD_INDEX = {  # no safety checker / feature extractor: loading must never need their weights
    "feature_extractor": _NONE,
    "requires_safety_checker": False,
    "safety_checker": _NONE,
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": _TOK,
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
_SDXL_INDEX = {
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": _TOK,
    "tokenizer_2": _TOK,
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def _v(version: str, config: dict, **changes: Any) -> dict:
    return {**config, "_diffusers_version": version, **changes}


def _text(config: dict, name: str | None, dtype: str, transformers: str) -> dict:
    named = {"_name_or_path": name} if name else {}
    return {**named, **config, "torch_dtype": dtype, "transformers_version": transformers}


# Tokenizer folders are (pad token, tokenizer_config name_or_path); None: SDXL's newer layout.
# OpenCLIP pads with id 0, which is "!": the SD2 and SDXL OpenCLIP tokenizers say so.
_SD1_TOKENIZER = ("<|endoftext|>", "openai/clip-vit-large-patch14")
_SD2_TOKENIZER = ("!", "hf-models/stable-diffusion-v2-768x768/tokenizer")
_SDXL_TOKENIZER = ("<|endoftext|>", None)
_SDXL_TOKENIZER_2 = ("!", None)

_SD2_INPAINT = "./hf-models/stable-diffusion-v2-inpainting/"
_SDXL_INPAINT_TEXT = (
    "/home/suraj_huggingface_co/.cache/huggingface/hub/models--stabilityai--stable-diffusion-xl"
    "-base-1.0/snapshots/bf714989e22c57ddc1c453bf74dab4521acb81d8/"
)

# family -> subfolder -> JSON (a tuple names a tokenizer folder, see above). Every setting
# that shapes a model or its sampling is the hub file's; metadata (_name_or_path, versions)
# is copied where known and changes nothing. The two deliberate departures (no feature
# extractor, xl_inpaint's VAE upcast) are commented where they are.
FAMILY_FILES: dict[str, dict[str, Any]] = {
    "v1": {
        "": _v("0.6.0", _SD_INDEX, _class_name="StableDiffusionPipeline", scheduler=["diffusers", "PNDMScheduler"]),
        "scheduler": _v("0.6.0", _SD_SCHEDULER, _class_name="PNDMScheduler"),
        "unet": _SD1_UNET,
        "vae": _v("0.6.0", _VAE_COMMON, sample_size=512),
        "text_encoder": _text(_CLIP_L, "openai/clip-vit-large-patch14", "float32", "4.22.0.dev0"),
        "tokenizer": _SD1_TOKENIZER,
    },
    "inpainting": {
        "": _v(
            "0.6.0", _SD_INDEX, _class_name="StableDiffusionInpaintPipeline", scheduler=["diffusers", "DDIMScheduler"]
        ),
        "scheduler": _v("0.6.0.dev0", _SD_SCHEDULER, _class_name="DDIMScheduler"),
        "unet": _v("0.6.0.dev0", _SD1_UNET, in_channels=9),  # latents + mask + masked image
        "vae": _v("0.6.0.dev0", _VAE_COMMON, sample_size=256),
        "text_encoder": _text(_CLIP_L, "openai/clip-vit-large-patch14", "float32", "4.22.0.dev0"),
        "tokenizer": _SD1_TOKENIZER,
    },
    "v2": {
        "": _v("0.8.0", _SD_INDEX, _class_name="StableDiffusionPipeline", scheduler=["diffusers", "DDIMScheduler"]),
        "scheduler": _v("0.8.0", _SD_SCHEDULER, _class_name="DDIMScheduler", prediction_type="v_prediction"),
        # 2.1 attends in float32 (upcast_attention): 2.1-768 gives NaNs in float16 otherwise.
        "unet": _v(
            "0.10.0.dev0",
            _SD2_UNET,
            _name_or_path="hf-models/stable-diffusion-v2-768x768/unet",
            num_class_embeds=None,
            only_cross_attention=False,
            sample_size=96,
            upcast_attention=True,
        ),
        "vae": _v("0.8.0", _VAE_COMMON, _name_or_path="hf-models/stable-diffusion-v2-768x768/vae", sample_size=768),
        "text_encoder": _text(
            _OPEN_CLIP_H, "hf-models/stable-diffusion-v2-768x768/text_encoder", "float32", "4.25.0.dev0"
        ),
        "tokenizer": _SD2_TOKENIZER,
    },
    "inpainting_v2": {
        "": _v(
            "0.8.0", _SD_INDEX, _class_name="StableDiffusionInpaintPipeline", scheduler=["diffusers", "PNDMScheduler"]
        ),
        "scheduler": _v("0.8.0", _SD_SCHEDULER, _class_name="PNDMScheduler"),
        "unet": _v("0.8.0", _SD2_UNET, _name_or_path=_SD2_INPAINT + "unet", in_channels=9, sample_size=64),
        "vae": _v("0.8.0", _VAE_COMMON, _name_or_path=_SD2_INPAINT + "vae", sample_size=512),
        "text_encoder": _text(_OPEN_CLIP_H, _SD2_INPAINT + "text_encoder", "float32", "4.25.0.dev0"),
        "tokenizer": ("!", _SD2_INPAINT + "tokenizer"),
    },
    "xl_base": {
        "": _v(
            "0.19.0.dev0",
            _SDXL_INDEX,
            _class_name="StableDiffusionXLPipeline",
            add_watermarker=None,
            force_zeros_for_empty_prompt=True,
        ),
        "scheduler": _v("0.19.0.dev0", _SDXL_SCHEDULER),
        "unet": _SDXL_UNET,
        "vae": _SDXL_VAE,
        "text_encoder": _text(_CLIP_L, None, "float16", "4.32.0.dev0"),
        "text_encoder_2": _text(_OPEN_CLIP_BIGG, None, "float16", "4.32.0.dev0"),
        "tokenizer": _SDXL_TOKENIZER,
        "tokenizer_2": _SDXL_TOKENIZER_2,
    },
    "xl_refiner": {
        "": _v(
            "0.19.0.dev0",
            _SDXL_INDEX,
            _class_name="StableDiffusionXLImg2ImgPipeline",
            add_watermarker=None,
            force_zeros_for_empty_prompt=False,
            requires_aesthetics_score=True,
            text_encoder=_NONE,
            tokenizer=_NONE,
        ),
        "scheduler": _v("0.19.0.dev0", _SDXL_SCHEDULER),
        "unet": _SDXL_REFINER_UNET,
        "vae": _SDXL_VAE,
        "text_encoder_2": _text(_OPEN_CLIP_BIGG, None, "float16", "4.32.0.dev0"),
        "tokenizer_2": _SDXL_TOKENIZER_2,
    },
    "xl_inpaint": {
        "": _v(
            "0.21.0.dev0",
            _SDXL_INDEX,
            _class_name="StableDiffusionXLInpaintPipeline",
            _name_or_path="stabilityai/stable-diffusion-xl-base-1.0",
            force_zeros_for_empty_prompt=True,
            requires_aesthetics_score=False,
        ),
        "scheduler": _v("0.21.0.dev0", _SDXL_SCHEDULER),
        # Its EMA training left the EMA settings in the config; diffusers ignores them.
        "unet": _v(
            "0.21.0.dev0",
            _SDXL_UNET,
            _name_or_path="valhalla/sdxl-inpaint-ema",
            attention_type="default",
            decay=0.9999,
            in_channels=9,
            inv_gamma=1.0,
            min_decay=0.0,
            optimization_step=37000,
            power=2 / 3,
            update_after_step=0,
            use_ema_warmup=False,
        ),
        # The repo ships madebyollin's fp16-fix VAE with force_upcast false. Single files carry
        # their own VAE, usually the original one that overflows in float16, so keep the upcast.
        "vae": _v("0.21.0.dev0", _SDXL_VAE, _name_or_path="madebyollin/sdxl-vae-fp16-fix", sample_size=512),
        "text_encoder": _text(_CLIP_L, _SDXL_INPAINT_TEXT + "text_encoder", "float16", "4.29.2"),
        "text_encoder_2": _text(_OPEN_CLIP_BIGG, _SDXL_INPAINT_TEXT + "text_encoder_2", "float16", "4.29.2"),
        "tokenizer": _SDXL_TOKENIZER,
        "tokenizer_2": _SDXL_TOKENIZER_2,
    },
}
