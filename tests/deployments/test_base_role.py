"""The Base role on real diffusers pipelines built from tiny random models (CPU, 2-4 steps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deployments.base import BaseRole
from deployments.plan import make_plan
from deployments.request import Checkpoint, GenerationRequest
from deployments.steps import Diffuse
from serve_app.errors import BadRequestError
from serve_app.field_types import SCHEDULERS
from storage.files import DataPaths
from tests.deployments.role_contract import RoleContract, pixels, run
from tests.tiny_models import (
    tiny_sd15_inpaint_pipeline,
    tiny_sd15_pipeline,
    tiny_sdxl_pipeline,
    write_diffusers_folder,
    write_ldm_checkpoint,
)


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    return DataPaths(tmp_path).ensure()


def diffuse(checkpoint: str, size: int = 64, **request: object) -> Diffuse:
    fields = {"width": size, "height": size, "num_inference_steps": 3, "seed": 3, **request}
    (step,) = make_plan(GenerationRequest(Checkpoint(checkpoint, size), **fields), random_seed=0).steps  # type: ignore[arg-type]
    return step


def generate(role: BaseRole, checkpoint: str, **request: object) -> list[np.ndarray]:
    return pixels(run(role, role.load(checkpoint), diffuse(checkpoint, **request)))


class TestBaseRoleContract(RoleContract):
    @pytest.fixture
    def role(self, paths: DataPaths) -> BaseRole:
        write_diffusers_folder(tiny_sd15_pipeline(), paths.models("checkpoint") / "tiny")
        return BaseRole(str(paths.root))

    @pytest.fixture
    def model_id(self) -> str:
        return "tiny"

    @pytest.fixture
    def make_step(self):  # noqa: ANN201
        return lambda seed, steps: diffuse("tiny", seed=seed, num_inference_steps=steps, scheduler="ddim")


def test_single_file_and_diffusers_folder_give_the_same_image(paths: DataPaths) -> None:
    folder = paths.models("checkpoint")
    pipe = tiny_sd15_pipeline(seed=4)
    write_diffusers_folder(pipe, folder / "tiny-folder")
    write_ldm_checkpoint(pipe, folder, "tiny-single.safetensors")
    write_ldm_checkpoint(pipe, folder, "tiny-single-ckpt.ckpt")
    role = BaseRole(str(paths.root))
    from_folder = generate(role, "tiny-folder")
    assert np.array_equal(from_folder[0], generate(role, "tiny-single.safetensors")[0])
    assert np.array_equal(from_folder[0], generate(role, "tiny-single-ckpt.ckpt")[0])


def test_sdxl_shaped_checkpoints_generate_deterministically(paths: DataPaths) -> None:
    folder = paths.models("checkpoint")
    pipe = tiny_sdxl_pipeline(seed=1)
    write_diffusers_folder(pipe, folder / "tiny-xl")
    write_ldm_checkpoint(pipe, folder, "tiny-xl.safetensors")
    role = BaseRole(str(paths.root))
    first = generate(role, "tiny-xl")[0]
    assert np.array_equal(first, generate(role, "tiny-xl")[0])
    assert np.array_equal(first, generate(role, "tiny-xl.safetensors")[0])
    assert not np.array_equal(first, generate(role, "tiny-xl", seed=4)[0])


def test_samples_in_one_batch_match_the_same_seeds_run_alone(paths: DataPaths) -> None:
    write_diffusers_folder(tiny_sd15_pipeline(), paths.models("checkpoint") / "tiny")
    role = BaseRole(str(paths.root))
    batched = generate(role, "tiny", seed=20, samples=2)
    alone = generate(role, "tiny", seed=21)
    # Same noise; batched and single runs may round differently in the last bit.
    assert np.abs(batched[1].astype(int) - alone[0].astype(int)).max() <= 2
    assert not np.array_equal(batched[0], batched[1])


def test_img2img_keeps_the_input_size(paths: DataPaths) -> None:
    from PIL import Image

    write_diffusers_folder(tiny_sd15_pipeline(), paths.models("checkpoint") / "tiny")
    role = BaseRole(str(paths.root))
    step = diffuse("tiny", num_inference_steps=4, strength=0.5)
    step = Diffuse(**{**step.__dict__, "width": 64, "height": 48, "source": None, "strength": 0.5})
    source = Image.new("RGB", (64, 48), (200, 40, 40))
    (image,) = pixels(run(role, role.load("tiny"), step, [source]))
    assert image.shape == (48, 64, 3)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_every_scheduler_runs(paths: DataPaths, scheduler: str) -> None:
    write_diffusers_folder(tiny_sd15_pipeline(), paths.models("checkpoint") / "tiny")
    (image,) = generate(BaseRole(str(paths.root)), "tiny", num_inference_steps=2, scheduler=scheduler)
    assert image.shape == (64, 64, 3)


def test_checkpoints_that_cannot_generate_from_text_are_refused(paths: DataPaths) -> None:
    folder = paths.models("checkpoint")
    write_ldm_checkpoint(tiny_sd15_inpaint_pipeline(), folder, "tiny-inpainting.safetensors")
    (folder / "garbage.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    role = BaseRole(str(paths.root))
    with pytest.raises(BadRequestError, match="cannot generate from text"):
        role.load("tiny-inpainting.safetensors")
    with pytest.raises(BadRequestError, match="garbage.safetensors"):
        role.load("garbage.safetensors")


def test_intermediate_images_are_decoded_every_n_steps(paths: DataPaths) -> None:
    from deployments.role import Intermediate

    write_diffusers_folder(tiny_sd15_pipeline(), paths.models("checkpoint") / "tiny")
    role = BaseRole(str(paths.root))
    step = diffuse("tiny", num_inference_steps=6, scheduler="ddim", intermediate_steps=2, samples=2)
    events = run(role, role.load("tiny"), step)
    shown = [event for event in events if isinstance(event, Intermediate)]
    assert [event.step for event in shown] == [2, 4]  # not the last: that is the output
    assert all(len(event.images) == 2 and event.images[0].size == (64, 64) for event in shown)
    assert len(pixels(events)) == 2


def test_scale_to_model_size_diffuses_at_the_models_size_and_returns_the_canvas(paths: DataPaths) -> None:
    write_diffusers_folder(tiny_sd15_pipeline(), paths.models("checkpoint") / "tiny")
    role = BaseRole(str(paths.root))
    loaded = role.load("tiny")
    request = {"num_inference_steps": 3, "seed": 5, "scheduler": "ddim"}
    (scaled,) = make_plan(
        GenerationRequest(Checkpoint("tiny", 64), width=32, height=48, scale_to_model_size=True, **request), 0
    ).steps  # type: ignore[arg-type]
    assert scaled.diffusion_size == (64, 96)
    (large,) = make_plan(GenerationRequest(Checkpoint("tiny", 64), width=64, height=96, **request), 0).steps  # type: ignore[arg-type]
    (plain,) = make_plan(GenerationRequest(Checkpoint("tiny", 64), width=32, height=48, **request), 0).steps  # type: ignore[arg-type]

    (got,) = run(role, loaded, scaled)[-1].images
    (at_model_size,) = run(role, loaded, large)[-1].images
    (unscaled,) = pixels(run(role, loaded, plain))
    assert got.size == (32, 48)
    expected = np.asarray(at_model_size.resize((32, 48), Image.Resampling.LANCZOS), dtype=float)
    assert np.abs(np.asarray(got, dtype=float) - expected).max() <= 1
    assert np.abs(np.asarray(got, dtype=float) - unscaled).mean() > 5


def test_a_canvas_larger_than_the_model_is_denoised_in_windows(paths: DataPaths) -> None:
    from deployments.multidiffusion import chunked_denoise
    from deployments.pipelines import generators, make_scheduler

    write_diffusers_folder(tiny_sd15_pipeline(), paths.models("checkpoint") / "tiny")
    role = BaseRole(str(paths.root))
    loaded = role.load("tiny")
    request = {"width": 128, "height": 64, "num_inference_steps": 3, "seed": 5, "scheduler": "ddim", "prompt": "a"}
    (chunked,) = make_plan(
        GenerationRequest(Checkpoint("tiny", 64), chunking_size=32, chunking_blur=16, **request), 0
    ).steps  # type: ignore[arg-type]
    (whole,) = make_plan(GenerationRequest(Checkpoint("tiny", 64), chunking_size=0, **request), 0).steps  # type: ignore[arg-type]
    assert chunked.chunked and not whole.chunked

    (got,) = pixels(run(role, loaded, chunked))
    pipe = loaded.pipeline
    (expected,) = chunked_denoise(
        pipe, prompt="a", negative_prompt=None, width=128, height=64, window=64, stride=32, blur=16,
        num_inference_steps=3, guidance_scale=chunked.guidance_scale, generator=generators((5,)),
        scheduler=make_scheduler(pipe.scheduler.config, "ddim", 5),
    )  # fmt: skip
    assert got.shape == (64, 128, 3)
    assert np.abs(got.astype(int) - np.asarray(expected, dtype=int)).max() <= 1
    assert np.abs(got.astype(int) - pixels(run(role, loaded, whole))[0].astype(int)).mean() > 1
