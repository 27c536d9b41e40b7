"""Tiny Stable Diffusion models for tests, and writers for the files users bring.

Users bring checkpoints in two layouts: diffusers folders and the original
LDM / SGM single files (A1111, ComfyUI, Civitai). The single-file writer here
ports diffusers' `scripts/convert_diffusers_to_original_stable_diffusion.py`
and `scripts/convert_diffusers_to_original_sdxl.py`, but derives the block
numbering from the UNet config instead of hard-coding SD's sizes, so it works
for the tiny shapes too.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    ControlNetModel,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    ModelMixin,
    StableDiffusionInpaintPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTextModelWithProjection, PreTrainedModel

from deployments.demo import (
    CLIP_L_WIDTH,
    DEMO_CHECKPOINT_NAME,
    SD_BETAS,
    seeded,
    text_config,
    tiny_sd15_components,
    tiny_sd15_pipeline,
    tiny_tokenizer,
    tiny_vae,
    write_demo_checkpoint,
)

__all__ = [
    "DEMO_CHECKPOINT_NAME",
    "ldm_state_dict",
    "tiny_controlnet",
    "tiny_sd15_components",
    "tiny_sd15_inpaint_pipeline",
    "tiny_sd15_pipeline",
    "tiny_sdxl_components",
    "tiny_sdxl_pipeline",
    "tiny_sdxl_refiner_pipeline",
    "tiny_tokenizer",
    "write_config_folder",
    "write_demo_checkpoint",
    "write_diffusers_folder",
    "write_ldm_checkpoint",
    "write_ldm_single_file",
    "write_tiny_controlnet",
    "write_tiny_inversion",
    "write_tiny_lora",
    "write_tiny_vae",
]

Tensors = dict[str, torch.Tensor]


# Hidden sizes of the two SDXL text encoders. They must differ: diffusers'
# single-file loader tells the OpenAI CLIP (embedders.0) from the OpenCLIP
# (embedders.1) by comparing position-embedding widths with the model it builds.
CLIP_G_WIDTH = 64
# OpenCLIP depth: diffusers recognises an SDXL base / refiner file by the key
# "...model.transformer.resblocks.9...", so the tiny OpenCLIP has 10 layers.
CLIP_G_LAYERS = 10
CLIP_G_PROJECTION = 32
SDXL_TIME_EMBED_DIM = 8


def tiny_sd15_inpaint_pipeline(seed: int = 0) -> StableDiffusionInpaintPipeline:
    return StableDiffusionInpaintPipeline(**tiny_sd15_components(seed, in_channels=9), requires_safety_checker=False)


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
    return seeded(
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
    clip_g_config = text_config(CLIP_G_WIDTH, CLIP_G_LAYERS, projection_dim=CLIP_G_PROJECTION)
    components = {
        "unet": _sdxl_unet(seed, refiner),
        "vae": tiny_vae(seed + 1, scaling_factor=0.13025),
        "text_encoder": None,
        "tokenizer": None,
        "text_encoder_2": seeded(seed + 3, lambda: CLIPTextModelWithProjection(clip_g_config)),
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
        components["text_encoder"] = seeded(seed + 2, lambda: CLIPTextModel(text_config(CLIP_L_WIDTH, 2)))
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


# ---------------------------------------------------------------- folders


def write_diffusers_folder(pipe: DiffusionPipeline, folder: Path) -> Path:
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return Path(folder)


def write_config_folder(pipe: DiffusionPipeline, folder: Path) -> Path:
    """The diffusers folder tree with configs and tokenizer files but no weights.

    This is what `from_single_file(config=...)` needs to build the pipeline offline.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pipe.save_config(str(folder))  # model_index.json
    for name, component in pipe.components.items():
        if component is None:
            continue
        target = str(folder / name)
        if isinstance(component, ModelMixin):
            component.save_config(target)
        elif isinstance(component, PreTrainedModel):
            component.config.save_pretrained(target)
        else:  # schedulers and tokenizers: their save writes no weights
            component.save_pretrained(target)
    return folder


# ------------------------------------------------------- UNet to LDM keys

_UNET_RESNET_PARTS = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}


def _unet_prefixes(config) -> dict[str, str]:
    """Diffusers module prefix -> LDM prefix, numbered as LDM's UNetModel does."""
    per_block = config.layers_per_block
    if not isinstance(per_block, int):
        raise TypeError(f"per-level `layers_per_block` is not supported: {per_block!r}")
    prefixes = {
        "conv_in.": "input_blocks.0.0.",
        "time_embedding.linear_1.": "time_embed.0.",
        "time_embedding.linear_2.": "time_embed.2.",
        "add_embedding.linear_1.": "label_emb.0.0.",
        "add_embedding.linear_2.": "label_emb.0.2.",
        "conv_norm_out.": "out.0.",
        "conv_out.": "out.2.",
        "mid_block.resnets.0.": "middle_block.0.",
        "mid_block.attentions.0.": "middle_block.1.",
        "mid_block.resnets.1.": "middle_block.2.",
    }
    # LDM numbers input blocks flat: conv_in, then per level its layers and a
    # downsampler.
    for level in range(len(config.down_block_types)):
        down, first = f"down_blocks.{level}.", 1 + level * (per_block + 1)
        for layer in range(per_block):
            prefixes[f"{down}resnets.{layer}."] = f"input_blocks.{first + layer}.0."
            prefixes[f"{down}attentions.{layer}."] = f"input_blocks.{first + layer}.1."
        prefixes[f"{down}downsamplers.0.conv."] = f"input_blocks.{first + per_block}.0.op."
    # Output blocks have one layer more per level; the upsampler follows the
    # level's last resnet and its attention, if the level has one.
    for level, block_type in enumerate(config.up_block_types):
        up, first = f"up_blocks.{level}.", level * (per_block + 1)
        for layer in range(per_block + 1):
            prefixes[f"{up}resnets.{layer}."] = f"output_blocks.{first + layer}.0."
            prefixes[f"{up}attentions.{layer}."] = f"output_blocks.{first + layer}.1."
        slot = 2 if "CrossAttn" in block_type else 1
        prefixes[f"{up}upsamplers.0."] = f"output_blocks.{first + per_block}.{slot}."
    return prefixes


def _split_prefix(key: str, prefixes: dict[str, str]) -> tuple[str, str]:
    matches = [prefix for prefix in prefixes if key.startswith(prefix)]
    if not matches:
        raise ValueError(f"no LDM name for diffusers key {key!r}")
    prefix = max(matches, key=len)
    return prefix, key[len(prefix) :]


def unet_to_ldm(unet) -> Tensors:
    prefixes = _unet_prefixes(unet.config)
    converted = {}
    for key, tensor in unet.state_dict().items():
        prefix, rest = _split_prefix(key, prefixes)
        if ".resnets." in prefix:
            part, _, leaf = rest.partition(".")
            rest = f"{_UNET_RESNET_PARTS.get(part, part)}.{leaf}"
        converted[prefixes[prefix] + rest] = tensor
    return converted


# -------------------------------------------------------- VAE to LDM keys

_VAE_ATTENTION_PARTS = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def _vae_prefixes(config) -> dict[str, str]:
    levels = len(config.block_out_channels)
    prefixes = {"quant_conv.": "quant_conv.", "post_quant_conv.": "post_quant_conv."}
    for side in ("encoder", "decoder"):
        prefixes[f"{side}.conv_in."] = f"{side}.conv_in."
        prefixes[f"{side}.conv_out."] = f"{side}.conv_out."
        prefixes[f"{side}.conv_norm_out."] = f"{side}.norm_out."
        prefixes[f"{side}.mid_block.attentions.0."] = f"{side}.mid.attn_1."
        for index in range(2):
            prefixes[f"{side}.mid_block.resnets.{index}."] = f"{side}.mid.block_{index + 1}."
    for level in range(levels):
        down, up = f"encoder.down_blocks.{level}.", f"decoder.up_blocks.{level}."
        prefixes[f"{down}resnets."] = f"encoder.down.{level}.block."
        prefixes[f"{down}downsamplers.0."] = f"encoder.down.{level}.downsample."
        # LDM numbers decoder levels from the lowest resolution up, diffusers
        # from the highest.
        prefixes[f"{up}resnets."] = f"decoder.up.{levels - 1 - level}.block."
        prefixes[f"{up}upsamplers.0."] = f"decoder.up.{levels - 1 - level}.upsample."
    return prefixes


def vae_to_ldm(vae) -> Tensors:
    prefixes = _vae_prefixes(vae.config)
    converted = {}
    for key, tensor in vae.state_dict().items():
        prefix, rest = _split_prefix(key, prefixes)
        if ".attentions." in prefix:
            module, _, leaf = rest.rpartition(".")
            rest = f"{_VAE_ATTENTION_PARTS[module]}.{leaf}"
            # LDM's VAE attention has 1x1 convolutions where diffusers has linears.
            if leaf == "weight" and module != "group_norm":
                tensor = tensor.reshape(*tensor.shape, 1, 1)
        rest = rest.replace("conv_shortcut.", "nin_shortcut.")
        converted[prefixes[prefix] + rest] = tensor
    return converted


# ----------------------------------------------- text encoders to LDM keys


def _clip_state_dict(text_encoder) -> Tensors:
    """The CLIP state dict with the `text_model.` prefix that transformers 5 drops."""
    state = {}
    for key, tensor in text_encoder.state_dict().items():
        if key.endswith("position_ids"):
            continue  # a buffer older checkpoints carried; the loader rebuilds it
        if not key.startswith(("text_model.", "text_projection.")):
            key = "text_model." + key
        state[key] = tensor
    return state


_OPEN_CLIP_PARTS = [
    ("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
    ("text_model.embeddings.position_embedding.weight", "positional_embedding"),
    ("text_model.final_layer_norm.", "ln_final."),
    ("text_model.encoder.layers.", "transformer.resblocks."),
    (".self_attn.", ".attn."),
    (".layer_norm1.", ".ln_1."),
    (".layer_norm2.", ".ln_2."),
    (".mlp.fc1.", ".mlp.c_fc."),
    (".mlp.fc2.", ".mlp.c_proj."),
]


def open_clip_to_ldm(text_encoder) -> Tensors:
    """A `CLIPTextModelWithProjection` in OpenCLIP's layout (SDXL's OpenCLIP)."""
    state = _clip_state_dict(text_encoder)
    converted = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        if key == "text_projection.weight":
            # OpenCLIP computes x @ P; a linear layer stores P transposed.
            converted["text_projection"] = tensor.T
            continue
        name = key
        for old, new in _OPEN_CLIP_PARTS:
            name = name.replace(old, new)
        head, _, leaf = name.rpartition(".")
        if head.endswith(("attn.q_proj", "attn.k_proj", "attn.v_proj")):
            # OpenCLIP uses nn.MultiheadAttention: q, k, v stacked in one in_proj.
            attention, _, projection = head.rpartition(".")
            fused.setdefault(f"{attention}.in_proj_{leaf}", {})[projection] = tensor
            continue
        converted[name] = tensor
    for key, parts in fused.items():
        converted[key] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]])
    return converted


def _prefixed(prefix: str, tensors: Tensors) -> Tensors:
    return {prefix + key: tensor for key, tensor in tensors.items()}


def ldm_state_dict(pipe: DiffusionPipeline) -> Tensors:
    """The pipeline's UNet, VAE and text encoder(s) in the original LDM/SGM layout."""
    state = {
        **_prefixed("model.diffusion_model.", unet_to_ldm(pipe.unet)),
        **_prefixed("first_stage_model.", vae_to_ldm(pipe.vae)),
    }
    text_encoder = pipe.components.get("text_encoder")
    text_encoder_2 = pipe.components.get("text_encoder_2")
    if text_encoder_2 is None:  # SD1.x: one OpenAI CLIP, HF layout
        state.update(_prefixed("cond_stage_model.transformer.", _clip_state_dict(text_encoder)))
    elif text_encoder is None:  # SDXL refiner: OpenCLIP alone, as embedder 0
        state.update(_prefixed("conditioner.embedders.0.model.", open_clip_to_ldm(text_encoder_2)))
    else:  # SDXL base: OpenAI CLIP (HF layout) then OpenCLIP
        state.update(_prefixed("conditioner.embedders.0.transformer.", _clip_state_dict(text_encoder)))
        state.update(_prefixed("conditioner.embedders.1.model.", open_clip_to_ldm(text_encoder_2)))
    # Own, contiguous storage: safetensors refuses views and shared tensors.
    return {key: tensor.detach().clone().contiguous() for key, tensor in state.items()}


def write_ldm_single_file(pipe: DiffusionPipeline, path: Path) -> Path:
    """Write an LDM-layout `.safetensors`, or a `.ckpt` holding {"state_dict": ...}."""
    path = Path(path)
    state = ldm_state_dict(pipe)
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    elif path.suffix == ".ckpt":
        torch.save({"state_dict": state}, path)
    else:
        raise ValueError(f"`path` must end in .safetensors or .ckpt, got {path.name!r}")
    return path


def write_ldm_checkpoint(pipe: DiffusionPipeline, checkpoint_dir: Path, name: str) -> Path:
    """Write `checkpoint_dir/name` and its sidecar config folder `<stem>.config`."""
    path = write_ldm_single_file(pipe, Path(checkpoint_dir) / name)
    write_config_folder(pipe, path.with_name(f"{path.stem}.config"))
    return path


# Files that change a loaded pipeline: LoRA, textual inversions, VAEs.


def write_tiny_lora(path: Path, seed: int = 0, pipe: DiffusionPipeline | None = None) -> Path:
    """A LoRA (diffusers keys, rank 4, random non-zero weights) for the tiny SD1.5 UNet's attention."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = (pipe or tiny_sd15_pipeline()).unet
    config = LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet.add_adapter(config, adapter_name="tiny")
        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet, adapter_name="tiny"))
    unet.delete_adapters("tiny")
    # Random weights are small next to the tiny UNet's: scale them up so their effect shows.
    layers = {key: (tensor * 20).contiguous() for key, tensor in layers.items()}
    StableDiffusionPipeline.save_lora_weights(str(path.parent), unet_lora_layers=layers, weight_name=path.name)
    return path


def write_tiny_inversion(path: Path, seed: int = 0, vectors: int = 2, width: int = CLIP_L_WIDTH) -> Path:
    """A textual inversion in A1111's safetensors layout ({"emb_params": [vectors, width]})."""
    generator = torch.Generator().manual_seed(seed)
    save_file({"emb_params": torch.randn(vectors, width, generator=generator) * 10}, str(path))
    return path


def write_tiny_vae(path: Path, seed: int = 7) -> Path:
    """A VAE shaped like the tiny SD1.5 one, other weights, as one file in diffusers keys."""
    vae = tiny_vae(seed, scaling_factor=0.18215)
    save_file({key: tensor.contiguous() for key, tensor in vae.state_dict().items()}, str(path))
    return path


def tiny_controlnet(seed: int = 0) -> ControlNetModel:
    """A ControlNet for the tiny SD1.5 UNet. ``from_unet`` zero-initialises the layers that read
    the control image and feed the UNet (so that training starts from no effect); random ones
    here make the control image's effect show."""
    controlnet = ControlNetModel.from_unet(tiny_sd15_pipeline(seed).unet)
    zeroed = (
        *controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
        controlnet.controlnet_cond_embedding.conv_out,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for block in zeroed:
            torch.nn.init.normal_(block.weight, std=5.0)
    return controlnet


def write_tiny_controlnet(path: Path, controlnet: ControlNetModel | None = None) -> Path:
    """As a diffusers folder when ``path`` has no suffix, else as one file in diffusers keys (a pickled
    state dict for .bin, as Enfugue's tile ControlNet is; else .safetensors)."""
    controlnet = controlnet or tiny_controlnet()
    state = {key: tensor.contiguous() for key, tensor in controlnet.state_dict().items()}
    if path.suffix == ".bin":
        torch.save(state, path)
    elif path.suffix:
        save_file(state, str(path))
    else:
        controlnet.save_pretrained(str(path))
    return path
