"""The node's data folder (DuckDB file, generated configs, and, by default, images and model
folders), and the model-folder lookups of ``storage.model_folders`` on local paths.

Every name that comes from a request is resolved inside one of the configured folders;
anything that would leave its folder (``..``, absolute paths elsewhere) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fsspec.implementations.local import LocalFileSystem

from storage import model_folders
from storage.model_folders import (
    MODEL_EXTENSIONS,
    MODEL_KINDS,
    SIDECAR_SUFFIX,
    UnreadableModelError,
    UnsafePathError,
)

__all__ = [
    "MODEL_EXTENSIONS", "MODEL_KINDS", "SIDECAR_SUFFIX", "DataPaths", "UnreadableModelError", "UnsafePathError",
    "checkpoint_size", "find_model", "list_models", "resolve_inside", "sidecar_config",
]  # fmt: skip

_LOCAL = LocalFileSystem()


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

    @property
    def cache(self) -> Path:
        """Local copies of the models of a remote shared storage (``storage.shared``)."""
        return self.root / "cache"

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


def list_models(folder: Path) -> list[str]:
    """Model files and diffusers folders under ``folder``, as sorted relative POSIX names."""
    return model_folders.list_models(_LOCAL, str(folder.resolve()))


def resolve_inside(folder: Path, name: str) -> Path:
    """``name`` (relative, or absolute inside ``folder``) as a path that stays inside ``folder``."""
    return Path(model_folders.inside(str(folder.resolve()), name))


def find_model(folder: Path, name: str) -> Path | None:
    """The model called ``name`` in ``folder`` (a file with a model extension or a diffusers folder)."""
    found = model_folders.find_model(_LOCAL, str(folder.resolve()), name)
    return None if found is None else Path(found)


def sidecar_config(checkpoint: Path) -> Path | None:
    found = model_folders.sidecar_config(_LOCAL, str(checkpoint))
    return None if found is None else Path(found)


def checkpoint_size(path: Path) -> int:
    """The model's native image size (``storage.model_folders.checkpoint_size``) of a local file."""
    return model_folders.checkpoint_size(_LOCAL, str(path))
