"""The offline config folders describe the real SD families exactly: checked through parameter
counts on the meta device, tokenizer ids, and diffusers' own single-file family detection."""

from __future__ import annotations

import json
from pathlib import Path

import diffusers
import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES, infer_diffusers_model_type
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from deployments import model_configs
from deployments.model_configs import (
    FAMILIES,
    ensure_config_folder,
)
from storage.files import checkpoint_size

# Parameter counts of the published models.
# UNets: SD1.5 859,520,964 and SD2.x 865,910,724 (the model cards' "860M"/"865M"; diffusers'
# own counts of the hub weights); SDXL base 2,567,463,684 (the SDXL report's "2.6B").
# Inpainting UNets add 5 input channels to conv_in (3x3, 320 out): +5*320*9 = 14,400.
# SDXL refiner 2,259,526,660: counted from its config and checked against the official
# sd_xl_refiner_1.0.safetensors, whose 6.08 GB in float16 are this UNet + VAE + OpenCLIP bigG.
# VAE 83,653,863 (all families). Text: CLIP ViT-L/14 123,060,480; OpenCLIP ViT-H/14 less its
# last layer (SD2) 340,387,840; OpenCLIP ViT-bigG/14 with projection (SDXL) 694,659,840.
SD15_UNET, SD2_UNET, SDXL_UNET = 859_520_964, 865_910_724, 2_567_463_684
INPAINT_EXTRA = 5 * 320 * 3 * 3
VAE = 83_653_863
CLIP_L, OPEN_CLIP_H, OPEN_CLIP_BIGG = 123_060_480, 340_387_840, 694_659_840

EXPECTED_COUNTS = {
    "v1": {"unet": SD15_UNET, "text_encoder": CLIP_L},
    "inpainting": {"unet": SD15_UNET + INPAINT_EXTRA, "text_encoder": CLIP_L},
    "v2": {"unet": SD2_UNET, "text_encoder": OPEN_CLIP_H},
    "inpainting_v2": {"unet": SD2_UNET + INPAINT_EXTRA, "text_encoder": OPEN_CLIP_H},
    "xl_base": {"unet": SDXL_UNET, "text_encoder": CLIP_L, "text_encoder_2": OPEN_CLIP_BIGG},
    "xl_refiner": {"unet": 2_259_526_660, "text_encoder_2": OPEN_CLIP_BIGG},
    "xl_inpaint": {
        "unet": SDXL_UNET + INPAINT_EXTRA,
        "text_encoder": CLIP_L,
        "text_encoder_2": OPEN_CLIP_BIGG,
    },
}

# family -> (scheduler, prediction type)
SCHEDULERS = {
    "v1": ("PNDMScheduler", "epsilon"),
    "inpainting": ("DDIMScheduler", "epsilon"),
    "v2": ("DDIMScheduler", "v_prediction"),
    "inpainting_v2": ("PNDMScheduler", "epsilon"),
    "xl_base": ("EulerDiscreteScheduler", "epsilon"),
    "xl_refiner": ("EulerDiscreteScheduler", "epsilon"),
    "xl_inpaint": ("EulerDiscreteScheduler", "epsilon"),
}

# OpenAI CLIP's ids, as every SD tokenizer on the hub produces them.
CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]
ASTRONAUT_IDS = [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407]

PIPELINE_CLASSES = {
    "v1": "StableDiffusionPipeline",
    "inpainting": "StableDiffusionInpaintPipeline",
    "v2": "StableDiffusionPipeline",
    "inpainting_v2": "StableDiffusionInpaintPipeline",
    "xl_base": "StableDiffusionXLPipeline",
    "xl_refiner": "StableDiffusionXLImg2ImgPipeline",
    "xl_inpaint": "StableDiffusionXLInpaintPipeline",
}
# The side each family was trained at (SD2 inpainting was tuned from the 512 base).
TRAINED_SIZES = {
    "v1": 512, "inpainting": 512, "v2": 768, "inpainting_v2": 512,
    "xl_base": 1024, "xl_refiner": 1024, "xl_inpaint": 1024,
}  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-configs")


def meta_models(folder: Path) -> dict[str, torch.nn.Module]:
    """Every weighted component of a config folder, built without memory on the meta device."""
    models = {}
    with init_empty_weights():
        models["unet"] = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        models["vae"] = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        for name, cls in (("text_encoder", CLIPTextModel), ("text_encoder_2", CLIPTextModelWithProjection)):
            if (folder / name).is_dir():
                models[name] = cls(CLIPTextConfig.from_pretrained(folder / name))
    return models


def text_tower(model: torch.nn.Module) -> torch.nn.Module:
    # transformers >= 5.6 flattened CLIPTextModel; the projection model still wraps `text_model`.
    return getattr(model, "text_model", model)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_components_have_the_published_parameter_counts(root, family):
    models = meta_models(ensure_config_folder(family, root))

    assert {name: count(model) for name, model in models.items()} == {
        "vae": VAE,
        **EXPECTED_COUNTS[family],
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_pipeline_index_and_scheduler(root, family):
    folder = ensure_config_folder(family, root)
    index = json.loads((folder / "model_index.json").read_text())
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())

    assert index["_class_name"] == PIPELINE_CLASSES[family]
    assert hasattr(diffusers, PIPELINE_CLASSES[family])
    assert (scheduler["_class_name"], scheduler.get("prediction_type", "epsilon")) == SCHEDULERS[family]
    assert getattr(diffusers, scheduler["_class_name"]).from_config(scheduler).config.steps_offset == 1
    if not family.startswith("xl_"):
        # Loading must never need safety-checker or feature-extractor files.
        assert index["safety_checker"] == index["feature_extractor"] == [None, None]
        assert index["requires_safety_checker"] is False


def test_family_specific_settings(root):
    def unet(family):
        return json.loads((ensure_config_folder(family, root) / "unet" / "config.json").read_text())

    def vae(family):
        return json.loads((ensure_config_folder(family, root) / "vae" / "config.json").read_text())

    assert unet("v2")["upcast_attention"] is True  # SD2.1-768 overflows float16 attention otherwise
    assert unet("v2")["sample_size"] * 8 == 768
    assert all(vae(f)["scaling_factor"] == 0.13025 for f in FAMILIES if f.startswith("xl_"))
    assert all("scaling_factor" not in vae(f) for f in FAMILIES if not f.startswith("xl_"))
    refiner_index = json.loads((ensure_config_folder("xl_refiner", root) / "model_index.json").read_text())
    assert refiner_index["requires_aesthetics_score"] is True
    assert refiner_index["text_encoder"] == refiner_index["tokenizer"] == [None, None]


@pytest.mark.parametrize(
    ("family", "subfolder", "pad_id"),
    [
        ("v1", "tokenizer", 49407),  # OpenAI CLIP pads with <|endoftext|>
        ("inpainting", "tokenizer", 49407),
        ("v2", "tokenizer", 0),  # OpenCLIP pads with id 0, "!"
        ("inpainting_v2", "tokenizer", 0),
        ("xl_base", "tokenizer", 49407),
        ("xl_base", "tokenizer_2", 0),
        ("xl_refiner", "tokenizer_2", 0),
        ("xl_inpaint", "tokenizer", 49407),
        ("xl_inpaint", "tokenizer_2", 0),
    ],
)
def test_tokenizer_gives_clip_ids(root, family, subfolder, pad_id):
    folder = ensure_config_folder(family, root)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), subfolder=subfolder, local_files_only=True)

    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == CAT_IDS
    assert tokenizer("a photo of an astronaut riding a horse on mars").input_ids == ASTRONAUT_IDS
    assert tokenizer.pad_token_id == pad_id
    padded = tokenizer("a photo of a cat", padding="max_length", max_length=tokenizer.model_max_length)
    assert padded.input_ids == CAT_IDS + [pad_id] * (77 - len(CAT_IDS))


def test_merges_file_matches_the_vocabulary(root):
    tokenizer_dir = ensure_config_folder("v1", root) / "tokenizer"
    vocab = json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
    merges = (tokenizer_dir / "merges.txt").read_text(encoding="utf-8").splitlines()

    assert merges[0] == "#version: 0.2"
    assert len(merges) - 1 == 49408 - 512 - 2
    # SimpleTokenizer order: byte symbols, their </w> forms, one token per merge, specials.
    assert (vocab["!"], vocab["!</w>"], vocab["<|startoftext|>"], vocab["<|endoftext|>"]) == (0, 256, 49406, 49407)
    assert vocab["".join(merges[1].split())] == 512
    assert vocab["".join(merges[-1].split())] == 49405


def ldm_detection_keys(family: str, folder: Path) -> dict[str, torch.Tensor]:
    """The keys diffusers' family detection reads, named as in an original LDM single file and
    shaped by the meta models built from our configs."""
    models = meta_models(folder)
    unet = models["unet"]
    keys = {"model.diffusion_model.input_blocks.0.0.weight": unet.conv_in.weight}
    if hasattr(unet.down_blocks[0], "attentions"):  # SD1/SD2: the first level has cross attention
        attn2 = unet.down_blocks[0].attentions[1].transformer_blocks[0].attn2
        keys["model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"] = attn2.to_k.weight
    if len(unet.up_blocks) == 4:  # output_blocks.11 exists with four levels of three blocks
        last_resnet = unet.up_blocks[3].resnets[2]
        keys["model.diffusion_model.output_blocks.11.0.skip_connection.weight"] = last_resnet.conv_shortcut.weight
    if family in ("v1", "inpainting"):
        position = text_tower(models["text_encoder"]).embeddings.position_embedding.weight
        keys["cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"] = position
    elif family in ("v2", "inpainting_v2"):
        tokens = text_tower(models["text_encoder"]).embeddings.token_embedding.weight
        keys["cond_stage_model.model.token_embedding.weight"] = tokens
    else:
        open_clip = text_tower(models["text_encoder_2"])
        # The refiner has OpenCLIP alone, as embedder 0; base and inpaint have CLIP-L first.
        prefix = "conditioner.embedders.0.model." if family == "xl_refiner" else "conditioner.embedders.1.model."
        keys[prefix + "transformer.resblocks.9.mlp.c_proj.bias"] = open_clip.encoder.layers[9].mlp.fc2.bias
        keys[prefix + "positional_embedding"] = open_clip.embeddings.position_embedding.weight
        keys[prefix + "text_projection"] = models["text_encoder_2"].text_projection.weight.T
    return keys


@pytest.mark.parametrize("family", FAMILIES)
def test_diffusers_detects_the_family_from_matching_ldm_keys(root, family):
    keys = ldm_detection_keys(family, ensure_config_folder(family, root))

    assert CHECKPOINT_KEY_NAMES["inpainting"] in keys
    assert infer_diffusers_model_type(keys) == family


def test_second_call_is_a_no_op(tmp_path):
    folder = ensure_config_folder("v1", tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}

    assert ensure_config_folder("v1", tmp_path) == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == stamps
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]  # no staging folder left behind


def test_losing_a_race_keeps_the_winners_folder(tmp_path, monkeypatch):
    real_files = model_configs._family_files
    raced = []

    def files_while_another_process_finishes(family):
        if not raced:  # the other writer completes while this one is still building
            raced.append(None)
            raced[0] = ensure_config_folder(family, tmp_path)
        return real_files(family)

    monkeypatch.setattr(model_configs, "_family_files", files_while_another_process_finishes)

    assert ensure_config_folder("xl_refiner", tmp_path) == raced[0] == tmp_path / "xl_refiner"
    assert [p.name for p in tmp_path.iterdir()] == ["xl_refiner"]
    assert (tmp_path / "xl_refiner" / "tokenizer_2" / "vocab.json").is_file()


@pytest.mark.parametrize("family", FAMILIES)
def test_the_size_the_server_reads_from_each_folder(root, family):
    assert checkpoint_size(ensure_config_folder(family, root)) == TRAINED_SIZES[family]


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match=r"unknown model family 'sd3'; expected one of v1, inpainting, .*xl_inpaint"):
        ensure_config_folder("sd3", Path("."))


def test_vendored_bpe_carries_its_license():
    configs = Path(model_configs.__file__).with_name("configs")
    assert (configs / "bpe_simple_vocab_16e6.txt.gz").is_file()
    assert "MIT" in (configs / "LICENSE").read_text()
