"""Tiny models, and LDM single files that diffusers' loader reads back exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import (
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.loaders.single_file_utils import infer_diffusers_model_type
from PIL import Image

from tests.tiny_models import (
    DEMO_CHECKPOINT_NAME,
    ldm_state_dict,
    tiny_sd15_components,
    tiny_sd15_inpaint_pipeline,
    tiny_sd15_pipeline,
    tiny_sdxl_pipeline,
    tiny_sdxl_refiner_pipeline,
    tiny_tokenizer,
    write_demo_checkpoint,
    write_diffusers_folder,
    write_ldm_checkpoint,
)

# diffusers' EulerDiscreteScheduler (SDXL's scheduler) calls np.array on a torch
# tensor, which numpy 2.4 warns about; nothing here can change that.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

# case -> (builder, pipeline class, model type diffusers infers from the file's keys)
CASES = {
    "sd15": (tiny_sd15_pipeline, StableDiffusionPipeline, "v1"),
    "sd15-inpaint": (
        tiny_sd15_inpaint_pipeline,
        StableDiffusionInpaintPipeline,
        "inpainting",
    ),
    "sdxl": (tiny_sdxl_pipeline, StableDiffusionXLPipeline, "xl_base"),
    "sdxl-refiner": (
        tiny_sdxl_refiner_pipeline,
        StableDiffusionXLImg2ImgPipeline,
        "xl_refiner",
    ),
}
MODEL_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")
LDM_PREFIXES = (
    "model.diffusion_model.",
    "first_stage_model.",
    "cond_stage_model.transformer.text_model.",
    "conditioner.embedders.0.transformer.text_model.",
    "conditioner.embedders.0.model.",
    "conditioner.embedders.1.model.",
)


def _image() -> Image.Image:
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    return Image.fromarray(np.stack([np.tile(ramp, (64, 1))] * 3, axis=-1))


def _mask() -> Image.Image:
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    return Image.fromarray(mask)


def _generate(pipe, case: str, seed: int = 7) -> np.ndarray:
    kwargs = {
        "prompt": "a tiny red fox",
        "num_inference_steps": 2,
        "generator": torch.Generator("cpu").manual_seed(seed),
        "output_type": "np",
    }
    if case == "sd15-inpaint":
        kwargs.update(image=_image(), mask_image=_mask(), height=64, width=64)
    elif case == "sdxl-refiner":
        # strength 1.0 keeps both steps (img2img runs steps * strength of them)
        kwargs.update(image=_image(), strength=1.0)
    else:
        kwargs.update(height=64, width=64)
    return pipe(**kwargs).images


@pytest.fixture(scope="module", params=list(CASES))
def case(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def written(case, tmp_path_factory):
    """The tiny pipeline, its diffusers folder, and pixels made from that folder."""
    build, pipeline_class, _ = CASES[case]
    pipe = build()
    root = tmp_path_factory.mktemp(case)
    folder = write_diffusers_folder(pipe, root / "diffusers")
    from_folder = pipeline_class.from_pretrained(str(folder), local_files_only=True)
    return {"pipe": pipe, "root": root, "reference": _generate(from_folder, case)}


@pytest.fixture(scope="module", params=[".safetensors", ".ckpt"])
def loaded(request, case, written):
    """The pipeline written as an LDM single file and read back by diffusers."""
    path = write_ldm_checkpoint(written["pipe"], written["root"], f"tiny-{case}{request.param}")
    sidecar = path.with_name(f"{path.stem}.config")
    _, pipeline_class, _ = CASES[case]
    return pipeline_class.from_single_file(str(path), config=str(sidecar), local_files_only=True)


def test_ldm_keys_use_the_original_layout(case):
    build, _, model_type = CASES[case]
    state = ldm_state_dict(build())
    assert all(key.startswith(LDM_PREFIXES) for key in state), sorted(state)[:5]
    assert not [key for key in state if ".down_blocks." in key or ".resnets." in key]
    # OpenCLIP embedders use OpenCLIP's names; the OpenAI CLIP keeps Hugging Face's
    open_clip = [key for key in state if ".model." in key and "diffusion_model" not in key]
    assert not [key for key in open_clip if "self_attn" in key or "text_model" in key]
    # diffusers recognises the file by its keys alone, as it would a real checkpoint
    assert infer_diffusers_model_type(state) == model_type


def test_single_file_restores_every_tensor(written, loaded):
    for name in MODEL_COMPONENTS:
        original = written["pipe"].components.get(name)
        if original is None:
            assert loaded.components.get(name) is None
            continue
        want, got = original.state_dict(), loaded.components[name].state_dict()
        assert want.keys() == got.keys(), name
        unequal = [key for key in want if not torch.equal(want[key], got[key])]
        assert not unequal, f"{name}: {unequal[:5]}"


def test_single_file_generates_the_same_pixels(case, written, loaded):
    np.testing.assert_array_equal(_generate(loaded, case), written["reference"])


def test_sidecar_config_folder_holds_no_weights(tmp_path):
    path = write_ldm_checkpoint(tiny_sd15_pipeline(), tmp_path, "tiny-sd15.safetensors")
    sidecar = tmp_path / "tiny-sd15.config"
    files = {p.relative_to(sidecar).as_posix() for p in sidecar.rglob("*") if p.is_file()}
    assert path == tmp_path / "tiny-sd15.safetensors" and path.is_file()
    assert {
        "model_index.json",
        "unet/config.json",
        "vae/config.json",
        "text_encoder/config.json",
    } <= files
    assert "scheduler/scheduler_config.json" in files and "tokenizer/tokenizer_config.json" in files
    assert not [f for f in files if f.endswith((".safetensors", ".bin", ".ckpt", ".pt"))]


def test_tokenizer_ids_match_the_text_encoder(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path / "tokenizer")
    config = tiny_sd15_components()["text_encoder"].config
    assert {p.name for p in (tmp_path / "tokenizer").iterdir()} >= {
        "vocab.json",
        "merges.txt",
    }
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (
        config.bos_token_id,
        config.eos_token_id,
        config.pad_token_id,
    )
    ids = tokenizer("a red fox", padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert len(ids) == config.max_position_embeddings == 77
    assert ids[0] == config.bos_token_id and max(ids) < config.vocab_size


def test_same_seed_builds_identical_weights_without_touching_global_rng():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first, again, other = (tiny_sd15_components(seed)["unet"].state_dict() for seed in (0, 0, 1))
    assert torch.equal(torch.rand(1), expected_next)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not all(torch.equal(first[key], other[key]) for key in first)


def test_demo_checkpoint_loads_and_is_seeded(tmp_path):
    folder = write_demo_checkpoint(tmp_path)
    assert folder == tmp_path / DEMO_CHECKPOINT_NAME
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
    first, again, other = (_generate(pipe, "sd15", seed) for seed in (1, 1, 2))
    assert first.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
