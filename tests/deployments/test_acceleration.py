"""The GPU options of the model roles (deployments/acceleration.py), on the paths the CPU can run:
channels-last, a compiled UNet, VAE tiling, and the checks of precision and attention."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deployments.acceleration import device_and_dtype
from deployments.base import BaseRole
from serve_app.acceleration_schemas import Acceleration
from storage.files import DataPaths
from tests.deployments.role_contract import pixels, run
from tests.deployments.test_base_role import diffuse
from tests.tiny_models import tiny_sd15_pipeline, write_diffusers_folder


@pytest.fixture
def paths(tmp_path: Path) -> DataPaths:
    paths = DataPaths(tmp_path).ensure()
    write_diffusers_folder(tiny_sd15_pipeline(), paths.models("checkpoint") / "tiny")
    return paths


def generate(role: BaseRole, size: int = 64) -> tuple[object, np.ndarray]:
    loaded = role.load("tiny")
    (image,) = pixels(run(role, loaded, diffuse("tiny", size=size, scheduler="ddim")))
    return loaded, image


def assert_close(image: np.ndarray, expected: np.ndarray) -> None:
    """Another layout or a compiled graph sums in another order: a pixel moves by a level or two."""
    assert image.shape == expected.shape
    assert np.abs(image.astype(int) - expected.astype(int)).max() <= 3


def test_channels_last_lays_out_the_models_and_draws_the_same_image(paths: DataPaths) -> None:
    _, expected = generate(BaseRole(str(paths.root)))
    loaded, image = generate(BaseRole(str(paths.root), acceleration=Acceleration(channels_last=True)))
    for model in (loaded.pipeline.unet, loaded.pipeline.vae):  # type: ignore[attr-defined]
        weight = next(p for p in model.parameters() if p.dim() == 4)
        assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert_close(image, expected)


def test_on_the_cpu_channels_last_is_off_unless_chosen(paths: DataPaths) -> None:
    loaded, _ = generate(BaseRole(str(paths.root)))
    weight = next(p for p in loaded.pipeline.unet.parameters() if p.dim() == 4)  # type: ignore[attr-defined]
    assert weight.is_contiguous()


def test_a_compiled_unet_compiles_once_per_size_and_draws_the_same_image(paths: DataPaths) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    _, expected = generate(BaseRole(str(paths.root)))
    role = BaseRole(str(paths.root), acceleration=Acceleration(compile=True))
    loaded, image = generate(role)
    unet = loaded.pipeline.unet  # type: ignore[attr-defined]
    assert unet._compiled_call_impl is not None
    assert_close(image, expected)
    frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    (again,) = pixels(run(role, loaded, diffuse("tiny", size=64, scheduler="ddim", seed=4)))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == frames  # same size: nothing compiled
    assert not np.array_equal(again, image)


def test_a_job_above_the_tiling_size_goes_through_the_vae_in_tiles(paths: DataPaths, monkeypatch) -> None:  # noqa: ANN001
    from diffusers import AutoencoderKL

    tiled: list[bool] = []
    decode = AutoencoderKL.decode

    def watched(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        tiled.append(self.use_tiling)
        return decode(self, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKL, "decode", watched)
    role = BaseRole(str(paths.root), acceleration=Acceleration(vae_tiling_above=48 * 48))
    loaded, large = generate(role, size=64)
    _, small = generate(role, size=32)
    assert tiled == [True, False]
    assert not loaded.pipeline.vae.use_tiling  # type: ignore[attr-defined] # switched back after the job
    _, untiled = generate(BaseRole(str(paths.root)), size=64)
    assert large.shape == untiled.shape == (64, 64, 3) and small.shape == (32, 32, 3)
    assert large.std() > 1  # an image, not a blank


def test_xformers_chosen_where_it_cannot_run_stops_the_replica_at_its_start(paths: DataPaths) -> None:
    """Not installed: the error names the extra; installed, on the CPU: it says CUDA only."""
    import importlib.util

    installed = importlib.util.find_spec("xformers") is not None
    expected = r"xformers' runs on CUDA only" if installed else r"xformers.*enfugue-serve\[gpu\]"
    with pytest.raises(RuntimeError, match=expected):
        BaseRole(str(paths.root), acceleration=Acceleration(attention="xformers"))


def test_half_precision_is_the_chosen_one_on_cuda_and_full_stays_float32(monkeypatch) -> None:  # noqa: ANN001
    assert device_and_dtype(None) == (torch.device("cpu"), torch.float32)  # this machine: no CUDA
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_and_dtype(None) == (torch.device("cuda"), torch.float16)
    assert device_and_dtype(None, Acceleration(half="bfloat16"))[1] == torch.bfloat16
    assert device_and_dtype("full", Acceleration(half="bfloat16"))[1] == torch.float32


def test_a_model_its_replica_drops_lets_go_of_its_weights_at_once(paths: DataPaths) -> None:
    """Serve calls the loaded model's ``__del__`` when its replica loads another in its place; the
    weights must go then (on a GPU, back to the device), though Serve still holds the object."""
    import weakref

    role = BaseRole(str(paths.root))
    loaded = role.load("tiny")
    unet = weakref.ref(loaded.pipeline.unet)
    loaded.__del__()
    assert unet() is None
    loaded.__del__()  # as Python calls it again when the object goes


def test_a_vae_that_overflows_in_float16_runs_in_float32_while_in_use() -> None:
    """SDXL's VAE (force_upcast in its config) decodes in float32 and goes back to float16 after;
    in bfloat16 (float32's range) it stays as it is."""
    from diffusers import AutoencoderKL

    from deployments.acceleration import vae_upcast
    from deployments.demo import tiny_vae

    vae = AutoencoderKL.from_config({**tiny_vae(0, 0.13025).config, "force_upcast": True}).to(torch.float16)
    with vae_upcast(vae) as dtype:
        assert dtype == vae.dtype == torch.float32
    assert vae.dtype == torch.float16
    with vae_upcast(vae.to(torch.bfloat16)) as dtype:
        assert dtype == vae.dtype == torch.bfloat16
