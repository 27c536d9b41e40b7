"""The data folder: where the DuckDB file, images and model files live, and safe lookups in it.

Every name that comes from a request is resolved here, inside one of the configured folders;
anything that would leave its folder (``..``, absolute paths elsewhere) is refused.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

# "background": segmentation models that remove backgrounds (ONNX files, deployments/background.py).
MODEL_KINDS = ("checkpoint", "lora", "lycoris", "inversion", "vae", "controlnet", "upscaler", "background")
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".onnx")
# A checkpoint saved as a single file may carry its diffusers configuration beside it in
# "<stem>.config/" (needed for non-standard shapes); such a folder is not a model itself.
SIDECAR_SUFFIX = ".config"


class UnsafePathError(ValueError):
    """A name that would resolve outside its folder."""


@dataclass(frozen=True)
class DataPaths:
    root: Path

    @property
    def database(self) -> Path:
        return self.root / "enfugue.duckdb"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def intermediates(self) -> Path:
        return self.root / "intermediates"

    @property
    def safety(self) -> Path:
        """The safety checker: a diffusers pipeline's ``safety_checker/`` and ``feature_extractor/``."""
        return self.root / "safety"

    @property
    def configs(self) -> Path:
        """Generated diffusers config folders for single-file checkpoints of known families."""
        return self.root / "configs"

    def models(self, kind: str) -> Path:
        if kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {kind!r}; allowed: {', '.join(MODEL_KINDS)}")
        return self.root / kind

    def ensure(self) -> DataPaths:
        for folder in (self.root, self.images, self.intermediates, self.configs):
            folder.mkdir(parents=True, exist_ok=True)
        for kind in MODEL_KINDS:
            self.models(kind).mkdir(exist_ok=True)
        return self


def is_diffusers_folder(path: Path) -> bool:
    """A diffusers pipeline folder (model_index.json), or one model's (a VAE, a ControlNet: its
    config.json beside its diffusion_pytorch_model weights)."""
    if not path.is_dir() or path.name.endswith(SIDECAR_SUFFIX):
        return False
    if (path / "model_index.json").is_file():
        return True
    return (path / "config.json").is_file() and any(path.glob("diffusion_pytorch_model*"))


def list_models(folder: Path) -> list[str]:
    """Model files and diffusers folders under ``folder``, as sorted relative POSIX names."""
    if not folder.is_dir():
        return []
    names: list[str] = []
    pending = [folder]
    while pending:
        current = pending.pop()
        for entry in current.iterdir():
            if entry.name.startswith("."):
                continue
            if is_diffusers_folder(entry):
                names.append(entry.relative_to(folder).as_posix())
            elif entry.is_dir() and not entry.name.endswith(SIDECAR_SUFFIX):
                pending.append(entry)
            elif entry.is_file() and entry.suffix.lower() in MODEL_EXTENSIONS:
                names.append(entry.relative_to(folder).as_posix())
    return sorted(names)


def resolve_inside(folder: Path, name: str) -> Path:
    """``name`` (relative, or absolute inside ``folder``) as a path that stays inside ``folder``."""
    if not name or "\x00" in name:
        raise UnsafePathError(f"{name!r} is not a valid file name")
    base = folder.resolve()
    candidate = Path(name)
    path = (candidate if candidate.is_absolute() else base / candidate).resolve()
    if path != base and base not in path.parents:
        raise UnsafePathError(f"{name!r} is outside the folder {base}")
    return path


def find_model(folder: Path, name: str) -> Path | None:
    """The model called ``name`` in ``folder`` (a file with a model extension or a diffusers folder)."""
    path = resolve_inside(folder, name)
    if path.is_file() and path.suffix.lower() in MODEL_EXTENSIONS:
        return path
    if is_diffusers_folder(path):
        return path
    return None


def sidecar_config(checkpoint: Path) -> Path | None:
    folder = checkpoint.with_name(checkpoint.stem + SIDECAR_SUFFIX)
    return folder if (folder / "model_index.json").is_file() else None


class UnreadableModelError(ValueError):
    """A model file whose header cannot be what it claims (truncated, corrupt, not a model)."""


# safetensors' own limit on a header; a larger length is a corrupt (or hostile) file.
_MAX_HEADER_BYTES = 100_000_000


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor names and shapes from a .safetensors header, without reading any weights."""
    with path.open("rb") as handle:
        prefix = handle.read(8)
        length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
        if not 0 < length <= min(_MAX_HEADER_BYTES, path.stat().st_size - 8):
            raise UnreadableModelError(f"{path.name} is not a .safetensors file (its header length is impossible)")
        try:
            header = json.loads(handle.read(length))
            return {key: value["shape"] for key, value in header.items() if key != "__metadata__"}
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise UnreadableModelError(f"{path.name} is not a .safetensors file (its header is not valid)") from error


def _configured_size(config_folder: Path) -> int:
    """UNet sample size times the VAE's downscale factor, as the pipeline computes its default."""
    unet = json.loads((config_folder / "unet" / "config.json").read_text())
    vae = json.loads((config_folder / "vae" / "config.json").read_text())
    return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)


# The tensors diffusers' own family detection looks at (single_file_utils.CHECKPOINT_KEY_NAMES).
_SD2_CROSS_ATTENTION = "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
_UNET_INPUT = "model.diffusion_model.input_blocks.0.0.weight"


def _size_from_shapes(shapes: dict[str, list[int]]) -> int:
    if any(key.startswith("conditioner.embedders.") for key in shapes):
        return 1024
    is_inpainter = shapes.get(_UNET_INPUT, [0, 4])[1] == 9
    if shapes.get(_SD2_CROSS_ATTENTION, [0])[-1] == 1024 and not is_inpainter:
        return 768
    return 512


def checkpoint_size(path: Path) -> int:
    """The model's native image size (the pipeline's default width and height).

    From the diffusers config when there is one; for a bare single file, by family: 1024 for
    SDXL, 768 for SD 2.x, 512 otherwise. Looks only at configuration and tensor headers (never
    unpickles): a bare ``.ckpt`` cannot be inspected safely without loading it, so, as Enfugue
    does, its name decides ("xl").
    """
    if path.is_dir():
        return _configured_size(path)
    if (sidecar := sidecar_config(path)) is not None:
        return _configured_size(sidecar)
    if path.suffix.lower() == ".safetensors":
        return _size_from_shapes(_safetensors_shapes(path))
    return 1024 if "xl" in path.name.lower() else 512
