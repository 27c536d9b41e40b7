"""Figures for the walking skeleton, all from one run on this machine:

- server start: `enfugue-serve run` on a fresh data folder until GET /api answers (a subprocess,
  as a newcomer starts it), and ray.init + serve.run inside this process;
- invoke-to-completed of a 64x64 4-step job over HTTP (POST /api/invoke, poll the status every
  5 ms) next to the direct diffusers call of the same job in this process (the baseline).

Run: make bench  (or .venv/bin/python bench/invoke_latency.py --runs 20)
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import httpx  # noqa: E402

JOB = {"prompt": "Hello, world!", "width": 64, "height": 64, "num_inference_steps": 4, "seed": 1}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def cli_start_seconds() -> float:
    """Wall time from starting the command to the first 200 from GET /api, fresh data folder."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        command = [sys.executable, "-m", "serve_app.cli", "run", "--port", str(port), "--data-dir", data]
        started = time.monotonic()
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(f"http://127.0.0.1:{port}/api")
            return time.monotonic() - started
        finally:
            server.terminate()
            server.wait(timeout=120)


def direct_seconds(checkpoint: Path, runs: int) -> list[float]:
    import torch
    from diffusers import StableDiffusionPipeline

    # A base replica reserves one CPU, and Ray gives it one torch thread; so does the baseline.
    torch.set_num_threads(1)
    pipe = StableDiffusionPipeline.from_pretrained(str(checkpoint), local_files_only=True, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    times = []
    for _ in range(runs + 1):  # the first call warms up
        started = time.perf_counter()
        pipe(
            JOB["prompt"], width=64, height=64, num_inference_steps=4,
            generator=torch.Generator("cpu").manual_seed(1),
        )  # fmt: skip
        times.append(time.perf_counter() - started)
    return times[1:]


def http_seconds(url: str, runs: int) -> list[float]:
    times = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(runs + 1):
            started = time.perf_counter()
            uuid = client.post("/api/invoke", json=JOB).json()["data"]["uuid"]
            while client.get(f"/api/invocation/{uuid}").json()["data"]["status"] != "completed":
                time.sleep(0.005)
            times.append(time.perf_counter() - started)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    import ray
    from ray import serve

    from deployments.tiny import write_demo_checkpoint
    from serve_app.app import build_app
    from serve_app.config import AppArgs
    from storage.files import DataPaths

    cli = cli_start_seconds()
    print(f"server start, `enfugue-serve run` to first 200 (fresh data folder): {cli:.1f} s")

    with tempfile.TemporaryDirectory() as data:
        paths = DataPaths(Path(data)).ensure()
        checkpoint = write_demo_checkpoint(paths.models("checkpoint"))
        direct = direct_seconds(checkpoint, args.runs)

        port = free_port()
        started = time.monotonic()
        ray.init(include_dashboard=False, logging_level="ERROR")
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(AppArgs(data_dir=paths.root)), name="enfugue", route_prefix="/")
        print(f"server start in-process, ray.init + serve.run: {time.monotonic() - started:.1f} s")
        try:
            served = http_seconds(f"http://127.0.0.1:{port}", args.runs)
        finally:
            serve.shutdown()
            ray.shutdown()

    base, over_http = statistics.median(direct), statistics.median(served)
    print(f"64x64, 4 steps, median of {args.runs} after one warm-up:")
    print(f"  direct diffusers call:           {base * 1000:7.1f} ms")
    print(f"  invoke -> completed over HTTP:   {over_http * 1000:7.1f} ms  ({over_http / base:.1f}x the direct call)")
    print(f"  overhead of serving:             {(over_http - base) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
