"""The app on the session's local Ray cluster with its model roles on the device the GPU tests run on
(``--gpu-device``): CUDA with full-size models, or the CPU with tiny ones (tests/gpu/models.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.gpu.models import SIZES, Sizes, write_models

MODEL_ROLES = ("base", "inpainter", "refiner", "upscaler")


@pytest.fixture(scope="module")
def device(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--gpu-device"))


@pytest.fixture(scope="module")
def sizes(device: str) -> Sizes:
    return SIZES[device]


@pytest.fixture(scope="module")
def gpu_http(ray_serve: str, device: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A client of the app deployed over a data folder holding the models of tests/gpu/models.py;
    on CUDA each model role takes a quarter of the one GPU, so that all four fit on it."""
    from ray import serve

    from serve_app.app import build_app
    from storage.files import DataPaths
    from tests.integration.conftest import small_app_args

    paths = DataPaths(tmp_path_factory.mktemp("gpu-data")).ensure()
    write_models(device, paths)
    args = small_app_args(paths.root)
    if device == "cuda":
        args = args.model_copy(
            update={name: getattr(args, name).model_copy(update={"num_gpus": 0.25}) for name in MODEL_ROLES}
        )
    serve.run(build_app(args), name="enfugue", route_prefix="/")
    try:
        with httpx.Client(base_url=ray_serve, timeout=600) as http:
            yield http
    finally:
        serve.delete("enfugue")
