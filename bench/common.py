"""What the benchmarks share: ports, a server started as a newcomer starts it, medians."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPOSITORY = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code in (200, 401):  # up (401: with auth on)
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


@contextlib.contextmanager
def running_server(
    data_dir: Path, python: str = sys.executable, source: Path = REPOSITORY, extra_args: list[str] | None = None
) -> Iterator[str]:
    """``enfugue-serve run`` in a subprocess on a free port, from ``source`` (a checkout); yields its URL.

    ``python``/``source`` let one benchmark run measure another checkout (a baseline) too.
    """
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(source), "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    command = [python, "-m", "serve_app.cli", "run", "--port", str(port), "--data-dir", str(data_dir)]
    command += extra_args or []
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/api")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=180)


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def percentile_ms(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)] * 1000


@contextlib.contextmanager
def local_serve(num_cpus: int = 8, env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """A local Ray cluster in this process with Serve's proxy on a free port, for benchmarks that
    deploy their own app (fake roles, several replicas); yields (base URL, metrics port)."""
    import ray
    from ray import serve

    port, metrics_port = free_port(), free_port()
    os.environ["RAY_AUTH_MODE"] = "disabled"
    # The workers import the fake roles from tests/, which is not installed.
    env = {"PYTHONPATH": str(REPOSITORY), "HF_HUB_OFFLINE": "1", **(env or {})}
    ray.init(
        num_cpus=num_cpus,  # logical: replicas reserve fractions; the machine may have 2 cores
        include_dashboard=False,
        logging_level="WARNING",
        runtime_env={"env_vars": env},
        _metrics_export_port=metrics_port,
        _system_config={"metrics_report_interval_ms": 1000},
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"log_level": "WARNING"})
        yield f"http://127.0.0.1:{port}", metrics_port
    finally:
        serve.shutdown()
        ray.shutdown()


def deploy(app: object, url: str) -> None:
    """Run ``app`` as the application "enfugue" at / and wait until it answers."""
    from ray import serve

    serve.run(app, name="enfugue", route_prefix="/")
    wait_ready(url + "/api")


def open_queue(client: httpx.Client, size: int) -> None:
    """Let ``size`` invocations wait at once (the defaults keep a handful)."""
    answer = client.post(
        "/api/settings", json={"max_queued_invocations": size, "max_queued_invocations_per_user": size}
    )
    answer.raise_for_status()
