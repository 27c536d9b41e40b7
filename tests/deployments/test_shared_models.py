"""A Base replica whose models live on shared storage that is not a local path (memory:// here,
as s3:// on a cluster) loads them from a local copy and makes the same pixels as from a folder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from deployments.base import BaseRole
from deployments.request import Adapter
from storage.files import DataPaths
from storage.shared import SharedStorage
from tests.deployments.role_contract import pixels, run
from tests.deployments.test_adapters import step
from tests.tiny_models import tiny_sd15_pipeline, write_diffusers_folder, write_tiny_lora


@pytest.fixture
def local(tmp_path: Path) -> DataPaths:
    paths = DataPaths(tmp_path / "local").ensure()
    write_diffusers_folder(tiny_sd15_pipeline(), paths.models("checkpoint") / "tiny")
    write_tiny_lora(paths.models("lora") / "style.safetensors", seed=1)
    return paths


@pytest.fixture
def remote(local: DataPaths) -> Iterator[str]:
    url = f"memory://models-{uuid.uuid4().hex}"
    storage = SharedStorage.from_url(url)
    for kind in ("checkpoint", "lora"):
        storage.fs.put(str(local.models(kind)), f"{storage.root}/{kind}", recursive=True)
    yield url
    storage.fs.rm(storage.root, recursive=True)


def test_a_remote_checkpoint_and_lora_give_the_pixels_of_local_ones(
    local: DataPaths, remote: str, tmp_path: Path
) -> None:
    node = DataPaths(tmp_path / "node").ensure()
    request = step(adapters=(Adapter("lora", "style.safetensors", 1.0),))
    from_folder = BaseRole(str(local.root))
    from_remote = BaseRole(str(node.root), remote)
    expected = pixels(run(from_folder, from_folder.load("tiny"), request))
    images = pixels(run(from_remote, from_remote.load("tiny"), request))
    assert all(np.array_equal(a, b) for a, b in zip(expected, images, strict=True))
    assert (node.cache / "checkpoint" / "tiny" / "model_index.json").is_file()
    assert (node.cache / "lora" / "style.safetensors").is_file()
    assert not (node.root / "checkpoint" / "tiny").exists()
