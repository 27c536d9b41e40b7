"""How fast ``enfugue-serve run`` stops on Ctrl+C while a long job runs, and that the job runs
again after the next start.

Each run: start the server on a fresh data folder (the demo checkpoint), invoke a 400-step
256 px job, wait until it has taken a few steps, send SIGINT: the seconds from the signal to the
process's exit (target: <= 10 s). Then start it again on the same folder: the job is queued again
and ends completed (its status says attempts 2).

    python -m bench.stop [--runs N]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import REPOSITORY, free_port, wait_ready

TARGET_S = 10.0
LONG = {"prompt": "long", "width": 256, "height": 256, "num_inference_steps": 400, "chunking_size": 0, "seed": 1}


def start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "serve_app.cli", "run", "--port", str(port), "--data-dir", str(data_dir)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def status(url: str, uuid: str) -> dict:
    return httpx.get(f"{url}/api/invocation/{uuid}", timeout=30).json()["data"]


def one_run() -> tuple[float, dict]:
    """(seconds from SIGINT to exit, the job's status after the next start ended it)."""
    with tempfile.TemporaryDirectory() as folder:
        data_dir, port = Path(folder), free_port()
        url = f"http://127.0.0.1:{port}"
        server = start(data_dir, port)
        wait_ready(url + "/api")
        uuid = httpx.post(url + "/api/invoke", json=LONG, timeout=60).json()["data"]["uuid"]
        while (status(url, uuid)["step"] or 0) < 3:
            time.sleep(0.2)
        signalled = time.monotonic()
        server.send_signal(signal.SIGINT)
        server.wait(timeout=120)
        stopped_in = time.monotonic() - signalled

        server = start(data_dir, port)
        try:
            wait_ready(url + "/api")
            while (ended := status(url, uuid))["status"] in ("queued", "processing"):
                time.sleep(1)
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=120)
        return stopped_in, ended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    results = [one_run() for _ in range(runs)]
    seconds = [stopped_in for stopped_in, _ in results]
    print(f"stop on Ctrl+C with a 400-step job running, {runs} runs: {', '.join(f'{s:.1f}' for s in seconds)} s")
    verdict = "met" if max(seconds) <= TARGET_S else "missed"
    print(f"  slowest {max(seconds):.1f} s (target <= {TARGET_S:.0f} s): {verdict}")
    for _, ended in results:
        print(f"  after the next start: {ended['status']}, attempts {ended['attempts']}, {ended['step']} steps")


if __name__ == "__main__":
    main()
