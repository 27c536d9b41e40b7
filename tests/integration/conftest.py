"""One local Ray cluster for the whole test session; the app deployed on it over real HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serve_app.config import AppArgs, ReplicaOptions, RoleOptions


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def metrics_port() -> int:
    """Where the session cluster's node serves its Prometheus metrics."""
    return _free_port()


@pytest.fixture(scope="session")
def dashboard_port() -> int:
    """Where the session cluster's dashboard takes Ray jobs (``ray job submit --address``)."""
    return _free_port()


@pytest.fixture(scope="session")
def ray_serve(metrics_port: int, dashboard_port: int) -> Iterator[str]:
    """A local Ray cluster with Serve's HTTP proxy on a free port; yields the base URL."""
    import ray
    from ray import serve

    from serve_app.local_ray import start_local_ray

    port = _free_port()
    # Logical CPUs: replicas reserve fractions of them; the machine has 2 real cores.
    start_local_ray(
        num_cpus=8,
        # As the head of cluster.yaml: the Serve config pins the CPU roles to it (test_serve_config).
        resources={"enfugue_head": 1},
        # The dashboard only for its job server: batches are submitted as Ray jobs (test_batch_job).
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=dashboard_port,
        runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}},
        _metrics_export_port=metrics_port,
        # Metrics reach the endpoint within a second, not Ray's default ten.
        _system_config={"metrics_report_interval_ms": 1000},
    )
    # One HTTP proxy, on the head: a second node on this machine (test_two_nodes) would want the same port.
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


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
