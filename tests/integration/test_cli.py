"""`enfugue-serve run` as a newcomer runs it: stopped by a signal at any moment, it stops for good
and promptly, and a start right after finds the DuckDB file free; ``--storage-url`` puts images
and models elsewhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, wait_for

pytestmark = pytest.mark.integration

STOPPED_WITHIN_S = 60


def start(data_dir: Path, port: int, *options: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "serve_app.cli", "run", "--port", str(port), "--data-dir", str(data_dir), *options]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stopped(server: subprocess.Popen[str]) -> str:
    output, _ = server.communicate(timeout=STOPPED_WITHIN_S)
    return output


def test_a_signal_at_any_moment_stops_the_server_and_frees_the_database(tmp_path: Path) -> None:
    from deployments.demo import write_demo_checkpoint

    (tmp_path / "checkpoint").mkdir()
    write_demo_checkpoint(tmp_path / "checkpoint")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"

    # A Ctrl+C the moment the API first answers, while the command is still finishing its start.
    server = start(tmp_path, port)
    wait_for(lambda: answers(url), bool, timeout=180)
    server.send_signal(signal.SIGINT)
    begun = time.monotonic()
    output = stopped(server)
    assert server.returncode == 0, output
    assert time.monotonic() - begun < STOPPED_WITHIN_S
    assert not answers(url)

    # Started again at once on the same data folder (the database opens), its images and models in
    # a storage elsewhere, empty: the demo checkpoint is written there and served from there.
    shared = tmp_path / "shared"
    server = start(tmp_path, port, "--storage-url", f"file://{shared}")
    wait_for(lambda: answers(url), bool, timeout=180)
    assert httpx.get(url).json()["data"]["status"] == "idle"
    assert httpx.get(url + "/checkpoints").json()["data"] == ["tiny-random-demo-noise-only"]
    assert (shared / "checkpoint" / "tiny-random-demo-noise-only" / "model_index.json").is_file()
    server.send_signal(signal.SIGTERM)
    output = stopped(server)
    assert server.returncode == 0 and "Shutting down" in output, output
