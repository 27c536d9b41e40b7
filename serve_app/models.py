"""Which checkpoint a request means. Plain file lookups; no torch."""

from __future__ import annotations

from typing import Any

from deployments.plan import Checkpoint
from serve_app.errors import BadRequestError
from storage.files import DataPaths, UnsafePathError, checkpoint_size, find_model, list_models


def resolve_checkpoint(name: str, paths: DataPaths, field: str = "model") -> Checkpoint:
    folder = paths.models("checkpoint")
    try:
        path = find_model(folder, name)
    except UnsafePathError as error:
        raise BadRequestError(f"{field}: {name!r:.200} is not a file in the checkpoint folder") from error
    if path is None:
        raise BadRequestError(f"{field}: no checkpoint named {name!r:.200}; see GET /api/checkpoints")
    return Checkpoint(name=path.relative_to(folder.resolve()).as_posix(), size=checkpoint_size(path))


def default_checkpoint(settings: dict[str, Any], paths: DataPaths) -> Checkpoint:
    """The configured default, or the only checkpoint there is (a fresh start has just the demo)."""
    if settings["default_checkpoint"] is not None:
        return resolve_checkpoint(settings["default_checkpoint"], paths)
    available = list_models(paths.models("checkpoint"))
    if len(available) != 1:
        raise BadRequestError(
            f"model: not given, and with {len(available)} checkpoints there is no default; pass `model` "
            "(see GET /api/checkpoints) or set `default_checkpoint` with POST /api/settings"
        )
    return resolve_checkpoint(available[0], paths)
