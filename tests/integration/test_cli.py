"""`enfugue-serve run` as a newcomer runs it: stopped by a signal at any moment, it stops for good
and promptly, and a start right after finds the DuckDB file free; ``--storage-url`` puts images
and models elsewhere."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration

STOPPED_WITHIN_S = 60


@dataclass
class Server:
    """``enfugue-serve run`` in a child process. Its output goes to a file: through a pipe that
    nobody reads until it stops, a chatty start (Ray's warnings on a loaded machine) could fill
    the pipe and block the server in a write."""

    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serving(data_dir: Path, port: int, *options: str) -> Iterator[Server]:
    """The server until the block stops it; one the block did not stop is killed with its process
    group (the local Ray it started), so that it never outlives the test."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "serve_app.cli", "run", "--port", str(port), "--data-dir", str(data_dir), *options]
    log = data_dir / f"server-{time.monotonic_ns()}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield Server(process, log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def started(server: Server, url: str) -> None:
    """Return once the API answers; a failure showing the server's output when it exited first or
    took over 180 s."""
    deadline = time.monotonic() + 180
    while not answers(url):
        if server.process.poll() is not None or time.monotonic() > deadline:
            status = server.process.poll()
            pytest.fail(f"the API did not answer (exit status {status}); output:\n{server.output()[-6000:]}")
        time.sleep(0.1)


def stopped(server: Server) -> str:
    """Its output, once it stopped; a failure showing it when it did not within the limit."""
    try:
        server.process.wait(timeout=STOPPED_WITHIN_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {STOPPED_WITHIN_S} s after the signal; output:\n{server.output()[-6000:]}")
    return server.output()


def test_a_signal_at_any_moment_stops_the_server_and_frees_the_database(tmp_path: Path) -> None:
    from deployments.demo import write_demo_checkpoint

    (tmp_path / "checkpoint").mkdir()
    write_demo_checkpoint(tmp_path / "checkpoint")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"

    # A Ctrl+C the moment the API first answers, while the command is still finishing its start.
    with serving(tmp_path, port) as server:
        started(server, url)
        server.process.send_signal(signal.SIGINT)
        begun = time.monotonic()
        output = stopped(server)
        assert server.process.returncode == 0, output
        assert time.monotonic() - begun < STOPPED_WITHIN_S
        assert not answers(url)

    # Started again at once on the same data folder (the database opens), its images and models in
    # a storage elsewhere, empty: the demo checkpoint is written there and served from there.
    shared = tmp_path / "shared"
    with serving(tmp_path, port, "--storage-url", f"file://{shared}") as server:
        started(server, url)
        assert httpx.get(url).json()["data"]["status"] == "idle"
        assert httpx.get(url + "/checkpoints").json()["data"] == ["tiny-random-demo-noise-only"]
        assert (shared / "checkpoint" / "tiny-random-demo-noise-only" / "model_index.json").is_file()
        server.process.send_signal(signal.SIGTERM)
        output = stopped(server)
        assert server.process.returncode == 0 and "Shutting down" in output, output
