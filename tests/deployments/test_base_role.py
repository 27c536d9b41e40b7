"""The Base role on real diffusers pipelines built from tiny random models (CPU, 2-4 steps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deployments.base import BaseRole
from deployments.plan import Checkpoint, make_plan
from serve_app.errors import BadRequestError, InvocationCancelled
from serve_app.schemas import InvokeRequest
from storage.files import DataPaths
from tests.local_handles import LocalHandle
from tests.tiny_models import (
    tiny_sd15_inpaint_pipeline,
    tiny_sd15_pipeline,
    tiny_sdxl_pipeline,
    write_diffusers_folder,
    write_ldm_checkpoint,
)


class RecordingStore:
    """Stands in for the Store: records progress, and says stop after ``stop_after`` steps."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.reports: list[tuple[int, int]] = []
        self.stop_after = stop_after

    def report_progress(self, uuid: str, step: int, total: int) -> bool:
        self.reports.append((step, total))
        return self.stop_after is None or step < self.stop_after


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    return DataPaths(tmp_path).ensure()


def run(role: BaseRole, checkpoint: str, size: int = 64, **request: object) -> list[np.ndarray]:
    body = {"width": size, "height": size, "num_inference_steps": 3, "seed": 3, **request}
    (step,) = make_plan(InvokeRequest.model_validate(body), Checkpoint(checkpoint, size), random_seed=0).steps
    return [np.asarray(image) for image in role.generate(role.load(checkpoint), "u" * 32, step, 0, 0)]


def test_single_file_and_diffusers_folder_give_the_same_image(paths: DataPaths) -> None:
    folder = paths.models("checkpoint")
    pipe = tiny_sd15_pipeline(seed=4)
    write_diffusers_folder(pipe, folder / "tiny-folder")
    write_ldm_checkpoint(pipe, folder, "tiny-single.safetensors")
    write_ldm_checkpoint(pipe, folder, "tiny-single-ckpt.ckpt")
    role = BaseRole(str(paths.root), LocalHandle(RecordingStore()))
    from_folder = run(role, "tiny-folder")
    assert np.array_equal(from_folder[0], run(role, "tiny-single.safetensors")[0])
    assert np.array_equal(from_folder[0], run(role, "tiny-single-ckpt.ckpt")[0])


def test_sdxl_shaped_checkpoints_generate_deterministically(paths: DataPaths) -> None:
    folder = paths.models("checkpoint")
    pipe = tiny_sdxl_pipeline(seed=1)
    write_diffusers_folder(pipe, folder / "tiny-xl")
    write_ldm_checkpoint(pipe, folder, "tiny-xl.safetensors")
    role = BaseRole(str(paths.root), LocalHandle(RecordingStore()))
    first = run(role, "tiny-xl")[0]
    assert np.array_equal(first, run(role, "tiny-xl")[0])
    assert np.array_equal(first, run(role, "tiny-xl.safetensors")[0])
    assert not np.array_equal(first, run(role, "tiny-xl", seed=4)[0])


def test_progress_is_reported_every_step_up_to_the_total(paths: DataPaths) -> None:
    write_diffusers_folder(tiny_sd15_pipeline(), paths.models("checkpoint") / "tiny")
    store = RecordingStore()
    run(BaseRole(str(paths.root), LocalHandle(store)), "tiny", scheduler="ddim")
    assert store.reports == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_the_store_can_stop_a_run_between_steps(paths: DataPaths) -> None:
    write_diffusers_folder(tiny_sd15_pipeline(), paths.models("checkpoint") / "tiny")
    store = RecordingStore(stop_after=2)
    with pytest.raises(InvocationCancelled):
        run(BaseRole(str(paths.root), LocalHandle(store)), "tiny", num_inference_steps=20, scheduler="ddim")
    assert store.reports[-1][0] == 2


def test_checkpoints_that_cannot_generate_from_text_are_refused(paths: DataPaths) -> None:
    folder = paths.models("checkpoint")
    write_ldm_checkpoint(tiny_sd15_inpaint_pipeline(), folder, "tiny-inpainting.safetensors")
    (folder / "garbage.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    role = BaseRole(str(paths.root), LocalHandle(RecordingStore()))
    with pytest.raises(BadRequestError, match="cannot generate from text"):
        role.load("tiny-inpainting.safetensors")
    with pytest.raises(BadRequestError, match="garbage.safetensors"):
        role.load("garbage.safetensors")
    with pytest.raises(BadRequestError, match="model"):
        role.load("../outside.safetensors")
