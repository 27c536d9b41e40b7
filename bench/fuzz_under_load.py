"""Generated requests against `enfugue-serve run` while 64 clients load it: no 5xx, reads stay served.

The fuzzing is tests/api/test_fuzz.py pointed at the running server (FUZZ_URL), with
FUZZ_EXAMPLES per operation; meanwhile 64 keep-alive clients read GET /api/models. Prints the
cases and their statuses, then the load's requests, errors, p50 and p99.

Run: .venv/bin/python -m bench.fuzz_under_load [--examples 400]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench.api_latency import _get
from bench.common import REPOSITORY, median_ms, percentile_ms, running_server

CLIENTS = 64


async def _load(port: int, stop: threading.Event, latencies: list[float], errors: list[str]) -> None:
    async def client() -> None:
        connection = None
        while not stop.is_set():
            started = time.perf_counter()
            try:
                connection = connection or await asyncio.open_connection("127.0.0.1", port)
                await _get(*connection, "/api/models")
            except Exception as error:  # counted; the client reconnects after a breath
                errors.append(f"{type(error).__name__}: {str(error)[:80]}")
                if connection is not None:
                    connection[1].close()
                connection = None
                await asyncio.sleep(0.5)
                continue
            latencies.append(time.perf_counter() - started)
        if connection is not None:
            connection[1].close()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=400, help="generated requests per operation")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data, running_server(Path(data)) as url:
        stop, latencies, errors = threading.Event(), [], []
        port = int(url.rsplit(":", 1)[1])
        loader = threading.Thread(target=lambda: asyncio.run(_load(port, stop, latencies, errors)))
        loader.start()
        started = time.perf_counter()
        env = {**os.environ, "FUZZ_URL": url, "FUZZ_EXAMPLES": str(args.examples), "HF_HUB_OFFLINE": "1"}
        fuzz = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-s", "-p", "tests.no_torch", "tests/api/test_fuzz.py"],
            cwd=REPOSITORY, env=env, capture_output=True, text=True,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        stop.set()
        loader.join()
    wanted = ("fuzzing:", "passed", "failed")
    print("\n".join(line for line in fuzz.stdout.splitlines() if any(word in line for word in wanted)))
    print(
        f"load: {CLIENTS} clients on GET /api/models for {elapsed:.0f} s: {len(latencies)} requests, "
        f"{len(errors)} errors, p50 {median_ms(latencies):.1f} ms, p99 {percentile_ms(latencies, 0.99):.1f} ms"
    )
    for error, count in Counter(errors).most_common(5):
        print(f"  {count} x {error}")
    sys.exit(fuzz.returncode)


if __name__ == "__main__":
    main()
