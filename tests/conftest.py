"""Shared fixtures. Nothing may reach a model hub: tiny models are built in code."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: an accidental hub call must fail fast.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--gpu", action="store_true", help="run the tests that need an accelerator (tests/gpu)")
    parser.addoption(
        "--gpu-device", choices=("cuda", "cpu"), default="cuda",
        help="where --gpu runs them: cuda (full-size models), or cpu (tiny models, small sizes), to prove all but CUDA",
    )  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--gpu") and config.getoption("--gpu-device") == "cuda":
        import torch

        if not torch.cuda.is_available():
            pytest.exit(
                f"--gpu: PyTorch {torch.__version__} finds no CUDA device here (torch.cuda.is_available() is "
                "False); add --gpu-device cpu to run the GPU tests on the CPU at small sizes",
                returncode=4,
            )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--gpu"):
        return
    skip = pytest.mark.skip(reason="needs an accelerator: pass --gpu (or --gpu --gpu-device cpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh data folder holding one checkpoint folder named as a first start names its demo.

    Configs only, no weights: enough for the API tier, which runs on the fake role. Tests that
    diffuse for real use ``demo_data_dir``."""
    from storage.files import DataPaths
    from tests.fake_role import DEMO_NAME, write_fake_checkpoint

    paths = DataPaths(tmp_path / "data").ensure()
    write_fake_checkpoint(paths.models("checkpoint") / DEMO_NAME)
    return paths.root


@pytest.fixture
def demo_data_dir(tmp_path: Path) -> Path:
    """A fresh data folder holding only the tiny demo checkpoint, as a first start leaves it."""
    from deployments.demo import write_demo_checkpoint
    from storage.files import DataPaths

    paths = DataPaths(tmp_path / "data").ensure()
    write_demo_checkpoint(paths.models("checkpoint"))
    return paths.root


def wait_for(poll: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 60.0) -> Any:
    """Poll until ``done(value)``; the last value on success, AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = poll()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still not done after {timeout} s: {value!r}")
        time.sleep(0.02)


@dataclass
class LocalServices:
    """The app's services wired in-process, and the objects behind them that tests look at."""

    services: Any
    store: Any
    role: Any
    planner: Any
    # The deployment shell of each role (LocalRole: ``.models``, what it has loaded, by model id).
    shells: dict[str, Any]


def local_services(
    data_dir: Path,
    role: Any = None,
    max_download_bytes: int | None = None,
    roles: dict[str, Any] | None = None,
    storage_url: str | None = None,
    **store_options: Any,
) -> LocalServices:
    """The real Store, Planner and Downloads wired in-process (no Ray) to ``role`` for every
    role name (the fake role unless given: see tests/fake_role.py), or to ``roles`` by name;
    images and model folders in ``storage_url`` when given, else in ``data_dir``."""
    from deployments.downloads import Downloads
    from deployments.planner import Planner
    from serve_app.config import AppArgs
    from serve_app.dependencies import Services
    from serve_app.remote import Remote
    from storage.store import Store
    from tests.fake_role import FakeRole
    from tests.local_handles import LocalHandle, LocalRole

    store = Store.func_or_class(str(data_dir), "test", storage_url=storage_url, **store_options)
    store_handle = LocalHandle(store)
    role = role if role is not None else FakeRole(checkpoints=data_dir / "checkpoint")
    shells = {name: LocalRole((roles or {}).get(name, role)) for name in ("base", "inpainter", "refiner", "upscaler")}
    planner = Planner.func_or_class(
        store_handle,
        {name: LocalHandle(shell) for name, shell in shells.items()},
        str(data_dir),
        "test",
        storage_url=storage_url,
    )
    services = Services(
        store=Remote(store_handle),
        planner=LocalHandle(planner),
        downloads=Remote(LocalHandle(Downloads.func_or_class(str(data_dir), max_download_bytes, storage_url))),
        args=AppArgs(data_dir=data_dir, storage_url=storage_url, max_body_bytes=2 * 1024 * 1024),
        version="test",
    )
    return LocalServices(services, store, role, planner, shells)


@contextmanager
def serve_locally(data_dir: Path, role: Any = None, **options: Any) -> Iterator[Any]:
    """The real FastAPI app on ``local_services(data_dir, role, **options)``, as a TestClient
    (``client.store``, ``client.role``, ``client.planner``, ``client.shells``: the objects behind it)."""
    from fastapi.testclient import TestClient

    from serve_app.ingress import create_api

    local = local_services(data_dir, role, **options)
    with TestClient(create_api(local.services)) as client:
        client.store = local.store  # type: ignore[attr-defined]
        client.role = local.role  # type: ignore[attr-defined]
        client.planner = local.planner  # type: ignore[attr-defined]
        client.shells = local.shells  # type: ignore[attr-defined]
        yield client
    local.store.close()


@contextmanager
def serve_over_http(data_dir: Path, role: Any = None, **options: Any) -> Iterator[tuple[str, LocalServices]]:
    """The same app served by uvicorn on a free port of 127.0.0.1, in a thread: (its URL, what is behind it)."""
    import uvicorn

    from serve_app.ingress import create_api

    local = local_services(data_dir, role, **options)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_api(local.services), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, bool, timeout=30)
    try:
        yield f"http://127.0.0.1:{port}", local
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        local.store.close()


@pytest.fixture
def local_app(data_dir: Path) -> Iterator[Any]:
    with serve_locally(data_dir) as client:
        yield client


def free_port() -> int:
    """A port of 127.0.0.1 free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# One local Ray cluster for the whole test session (tests/integration, tests/gpu).


@pytest.fixture(scope="session")
def metrics_port() -> int:
    """Where the session cluster's node serves its Prometheus metrics."""
    return free_port()


@pytest.fixture(scope="session")
def dashboard_port() -> int:
    """Where the session cluster's dashboard takes Ray jobs (``ray job submit --address``)."""
    return free_port()


@pytest.fixture(scope="session")
def ray_serve(metrics_port: int, dashboard_port: int) -> Iterator[str]:
    """A local Ray cluster with Serve's HTTP proxy on a free port; yields the base URL."""
    import ray
    from ray import serve

    from serve_app.local_ray import start_local_ray

    port = free_port()
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
