"""The data folder: listings, safe name resolution, checkpoint sizes from headers."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from storage.files import DataPaths, UnsafePathError, checkpoint_size, find_model, list_models, resolve_inside


def _safetensors(path: Path, shapes: dict[str, list[int]]) -> Path:
    """A header-only .safetensors file (no weights are read by the code under test)."""
    header = {key: {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]} for key, shape in shapes.items()}
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded)
    return path


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    return DataPaths(tmp_path).ensure()


def test_layout(paths: DataPaths) -> None:
    names = {entry.name for entry in paths.root.iterdir()}
    assert {
        "images",
        "intermediates",
        "checkpoint",
        "lora",
        "lycoris",
        "inversion",
        "vae",
        "controlnet",
        "upscaler",
    } <= names


def test_listing_has_model_files_and_diffusers_folders_only(paths: DataPaths) -> None:
    folder = paths.models("checkpoint")
    (folder / "a.safetensors").write_bytes(b"")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.ckpt").write_bytes(b"")
    (folder / "notes.txt").write_text("not a model")
    (folder / "pipe").mkdir()
    (folder / "pipe" / "model_index.json").write_text("{}")
    (folder / "a.config").mkdir()
    (folder / "a.config" / "model_index.json").write_text("{}")
    assert list_models(folder) == ["a.safetensors", "pipe", "sub/b.ckpt"]


@pytest.mark.parametrize("name", ["../x.safetensors", "/etc/passwd", "sub/../../x", "", "a\x00b"])
def test_names_cannot_leave_their_folder(paths: DataPaths, name: str) -> None:
    with pytest.raises(UnsafePathError):
        resolve_inside(paths.models("lora"), name)


def test_absolute_paths_inside_the_folder_are_accepted(paths: DataPaths) -> None:
    model = paths.models("checkpoint") / "m.safetensors"
    model.write_bytes(b"")
    assert find_model(paths.models("checkpoint"), str(model)) == model.resolve()
    assert find_model(paths.models("checkpoint"), "missing.safetensors") is None


def test_checkpoint_size_by_family(tmp_path: Path) -> None:
    sd1 = _safetensors(tmp_path / "sd1.safetensors", {"model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3]})
    sd2 = _safetensors(
        tmp_path / "sd2.safetensors",
        {"model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": [320, 1024]},
    )
    xl = _safetensors(tmp_path / "xl.safetensors", {"conditioner.embedders.1.model.positional_embedding": [77, 1280]})
    assert [checkpoint_size(p) for p in (sd1, sd2, xl)] == [512, 768, 1024]
    (tmp_path / "my_xl_model.ckpt").write_bytes(b"")
    assert checkpoint_size(tmp_path / "my_xl_model.ckpt") == 1024


def test_checkpoint_size_of_a_diffusers_folder_comes_from_its_config(tmp_path: Path) -> None:
    folder = tmp_path / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "vae").mkdir()
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "config.json").write_text(json.dumps({"sample_size": 96}))
    (folder / "vae" / "config.json").write_text(json.dumps({"block_out_channels": [1, 2, 3, 4]}))
    assert checkpoint_size(folder) == 768
