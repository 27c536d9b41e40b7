"""Model folders on any fsspec filesystem: listings, safe names, checkpoint sizes from headers.

One implementation for a local folder and for shared storage (a mount, s3://, gs://, ...): each
function takes the filesystem and paths in its own terms (fsspec paths: POSIX, no protocol).
Every name that comes from a request is resolved by ``inside``; anything that would leave its
folder (``..``, absolute paths elsewhere, NUL) is refused.
"""

from __future__ import annotations

import errno
import json
import posixpath
import struct
from typing import Any

from fsspec import AbstractFileSystem

# "background": segmentation models that remove backgrounds (ONNX files, deployments/background.py);
# "annotators": the models that make ControlNet control images (deployments/annotators.py).
MODEL_KINDS = (
    "checkpoint", "lora", "lycoris", "inversion", "vae", "controlnet", "upscaler", "background", "annotators",
)  # fmt: skip
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".onnx")
# A checkpoint saved as a single file may carry its diffusers configuration beside it in
# "<stem>.config/" (needed for non-standard shapes); such a folder is not a model itself.
SIDECAR_SUFFIX = ".config"


class UnsafePathError(ValueError):
    """A name that would resolve outside its folder."""


class UnreadableModelError(ValueError):
    """A model file whose header cannot be what it claims (truncated, corrupt, not a model)."""


def inside(folder: str, name: str) -> str:
    """``name`` (relative, or absolute inside ``folder``) as a normalised path inside ``folder``."""
    if not name or "\x00" in name:
        raise UnsafePathError(f"{name!r} is not a valid file name")
    base = posixpath.normpath(folder)
    path = posixpath.normpath(name if name.startswith("/") else posixpath.join(base, name))
    if path != base and not path.startswith(base.rstrip("/") + "/"):
        raise UnsafePathError(f"{name!r} is outside the folder {base}")
    return path


def missing(error: OSError) -> bool:
    """An error that means "no such file" (a name too long for the filesystem is none either)."""
    return isinstance(error, FileNotFoundError | NotADirectoryError) or error.errno in (errno.ENAMETOOLONG, errno.ELOOP)


def entries(fs: AbstractFileSystem, folder: str) -> list[dict[str, Any]]:
    """What ``folder`` holds (fsspec info dicts); nothing when it does not exist."""
    try:
        listed = fs.ls(folder, detail=True)
    except OSError as error:
        if missing(error):
            return []
        raise
    own = folder.rstrip("/")
    return [entry for entry in listed if entry["name"].rstrip("/") != own]


def _basename(entry: dict[str, Any]) -> str:
    return posixpath.basename(entry["name"].rstrip("/"))


def _holds_diffusers(listed: list[dict[str, Any]]) -> bool:
    """A diffusers pipeline folder (model_index.json), or one model's (a VAE, a ControlNet: its
    config.json beside its diffusion_pytorch_model weights)."""
    files = {_basename(entry) for entry in listed if entry["type"] == "file"}
    if "model_index.json" in files:
        return True
    return "config.json" in files and any(name.startswith("diffusion_pytorch_model") for name in files)


def is_diffusers_folder(fs: AbstractFileSystem, path: str) -> bool:
    return not path.rstrip("/").endswith(SIDECAR_SUFFIX) and _holds_diffusers(entries(fs, path))


def list_models(fs: AbstractFileSystem, folder: str) -> list[str]:
    """Model files and diffusers folders under ``folder``, as sorted relative POSIX names."""
    folder = fs._strip_protocol(folder).rstrip("/")
    names: list[str] = []
    pending = [entries(fs, folder)]  # one listing per folder walked, remote or not
    while pending:
        for entry in pending.pop():
            path, name = entry["name"].rstrip("/"), _basename(entry)
            if name.startswith("."):
                continue
            if entry["type"] == "directory" and not name.endswith(SIDECAR_SUFFIX):
                listed = entries(fs, path)
                if _holds_diffusers(listed):
                    names.append(path[len(folder) + 1 :])
                else:
                    pending.append(listed)
            elif entry["type"] == "file" and posixpath.splitext(name)[1].lower() in MODEL_EXTENSIONS:
                names.append(path[len(folder) + 1 :])
    return sorted(names)


def find_model(fs: AbstractFileSystem, folder: str, name: str) -> str | None:
    """The path of the model called ``name`` in ``folder`` (a file with a model extension or a
    diffusers folder), or None."""
    path = inside(folder, name)
    try:
        info = fs.info(path)
    except OSError as error:
        if missing(error):
            return None
        raise
    if info["type"] == "file":
        return path if posixpath.splitext(path)[1].lower() in MODEL_EXTENSIONS else None
    if info["type"] == "directory" and is_diffusers_folder(fs, path):
        return path
    return None


def sidecar_config(fs: AbstractFileSystem, checkpoint: str) -> str | None:
    folder = posixpath.splitext(checkpoint)[0] + SIDECAR_SUFFIX
    return folder if fs.isfile(posixpath.join(folder, "model_index.json")) else None


# safetensors' own limit on a header; a larger length is a corrupt (or hostile) file.
_MAX_HEADER_BYTES = 100_000_000


def _safetensors_shapes(fs: AbstractFileSystem, path: str) -> dict[str, list[int]]:
    """Tensor names and shapes from a .safetensors header: two range reads, no weights."""
    name = posixpath.basename(path)
    prefix = fs.cat_file(path, start=0, end=8)
    length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
    if not 0 < length <= min(_MAX_HEADER_BYTES, fs.size(path) - 8):
        raise UnreadableModelError(f"{name} is not a .safetensors file (its header length is impossible)")
    try:
        header = json.loads(fs.cat_file(path, start=8, end=8 + length))
        return {key: value["shape"] for key, value in header.items() if key != "__metadata__"}
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise UnreadableModelError(f"{name} is not a .safetensors file (its header is not valid)") from error


def _configured_size(fs: AbstractFileSystem, config_folder: str) -> int:
    """UNet sample size times the VAE's downscale factor, as the pipeline computes its default."""
    unet = json.loads(fs.cat_file(posixpath.join(config_folder, "unet", "config.json")))
    vae = json.loads(fs.cat_file(posixpath.join(config_folder, "vae", "config.json")))
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


def checkpoint_size(fs: AbstractFileSystem, path: str) -> int:
    """The model's native image size (the pipeline's default width and height).

    From the diffusers config when there is one; for a bare single file, by family: 1024 for
    SDXL, 768 for SD 2.x, 512 otherwise. Looks only at configuration and tensor headers (never
    unpickles): a bare ``.ckpt`` cannot be inspected safely without loading it, so, as Enfugue
    does, its name decides ("xl").
    """
    try:
        if fs.isdir(path):
            return _configured_size(fs, path)
        if (sidecar := sidecar_config(fs, path)) is not None:
            return _configured_size(fs, sidecar)
        if path.lower().endswith(".safetensors"):
            return _size_from_shapes(_safetensors_shapes(fs, path))
    except UnreadableModelError:
        raise
    except (FileNotFoundError, ValueError, KeyError, TypeError, IndexError) as error:
        # A folder without a UNet's or VAE's config.json, a config without its keys, odd shapes.
        raise UnreadableModelError(
            f"{posixpath.basename(path)}: its configuration cannot be read ({error!r:.100})"
        ) from error
    return 1024 if "xl" in posixpath.basename(path).lower() else 512
