"""The app deployed over real HTTP on the session's local Ray cluster (``ray_serve``, tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serve_app.config import AppArgs, ReplicaOptions, RoleOptions


def small_app_args(data_dir: Path) -> AppArgs:
    light = ReplicaOptions(num_cpus=0.25)
    return AppArgs(
        data_dir=data_dir,
        ingress=light,
        store=light,
        planner=light,
        base=RoleOptions(num_cpus=1, num_gpus=0),
        inpainter=RoleOptions(num_cpus=0.5, num_gpus=0),
        refiner=RoleOptions(num_cpus=0.5, num_gpus=0),
        upscaler=RoleOptions(num_cpus=0.5, num_gpus=0),
    )


@pytest.fixture(scope="module")
def deployed(ray_serve: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The application deployed over a fresh data folder with the demo checkpoint."""
    from ray import serve

    from deployments.demo import write_demo_checkpoint
    from serve_app.app import build_app
    from storage.files import DataPaths

    paths = DataPaths(tmp_path_factory.mktemp("data")).ensure()
    write_demo_checkpoint(paths.models("checkpoint"))
    serve.run(build_app(small_app_args(paths.root)), name="enfugue", route_prefix="/")
    try:
        yield ray_serve, paths.root
    finally:
        serve.delete("enfugue")


@pytest.fixture
def http(deployed: tuple[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=deployed[0], timeout=60) as client:
        yield client
