"""Read latency of the API against this machine's floors, all in one run.

For GET /api/models and GET /api/invocation/{uuid} (no auth, as a fresh start serves them):
sequential p50 over N requests, then 32 concurrent keep-alive clients for a few seconds
(requests/s, p50, p99). The same load goes against two floors on Ray Serve (bench/floor_app.py):
a one-route FastAPI app, and one whose route makes one deployment call. Our figures are printed
as ratios to the one-call floor (the target) and to the one-route floor (the goal beyond).

Target (issue 6): within 1.2x of the one-deployment-call floor, sequential p50 and requests/s.

Run: make bench, or .venv/bin/python -m bench.api_latency [--rounds 3 --seconds 4 --sequential 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import free_port, median_ms, percentile_ms, running_server, wait_ready

CLIENTS = 32
TARGET = 1.2


@dataclass
class Figures:
    sequential_p50_ms: float
    rate: float
    p50_ms: float
    p99_ms: float


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> None:
    """One keep-alive GET, as light on the client side as it gets."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise RuntimeError(f"GET {path} answered {status.decode()}")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    await reader.readexactly(length)


async def _client(port: int, path: str, until: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            await _get(reader, writer, path)
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def _measure(port: int, path: str, sequential: int, seconds: float) -> Figures:
    latencies: list[float] = []
    await _client(port, path, time.perf_counter() + 1.0, [])  # warm-up
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(sequential):
        started = time.perf_counter()
        await _get(reader, writer, path)
        latencies.append(time.perf_counter() - started)
    writer.close()
    loaded: list[float] = []
    started = time.perf_counter()
    until = started + seconds
    await asyncio.gather(*(_client(port, path, until, loaded) for _ in range(CLIENTS)))
    elapsed = time.perf_counter() - started
    return Figures(median_ms(latencies), len(loaded) / elapsed, median_ms(loaded), percentile_ms(loaded, 0.99))


def measure(url: str, path: str, sequential: int, seconds: float) -> Figures:
    return asyncio.run(_measure(int(url.rsplit(":", 1)[1]), path, sequential, seconds))


@contextlib.contextmanager
def floors() -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "bench.floor_app", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/one-call/")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=180)


def one_invocation(url: str) -> str:
    """The uuid of a completed invocation to read the status of."""
    job = {"prompt": "status to read", "width": 64, "height": 64, "num_inference_steps": 2}
    with httpx.Client(base_url=url, timeout=120) as client:
        uuid = client.post("/api/invoke", content=json.dumps(job)).json()["data"]["uuid"]
        while client.get(f"/api/invocation/{uuid}").json()["data"]["status"] != "completed":
            time.sleep(0.05)
    return uuid


def row(label: str, figures: Figures, one_call: Figures | None = None, one_route: Figures | None = None) -> str:
    text = (
        f"  {label:<28}{figures.sequential_p50_ms:8.1f}ms{figures.rate:9.0f}/s"
        f"{figures.p50_ms:9.1f}ms{figures.p99_ms:9.1f}ms"
    )
    for floor in (one_call, one_route):
        if floor is not None:
            text += (
                f"   {figures.sequential_p50_ms / floor.sequential_p50_ms:5.2f}x p50"
                f" {floor.rate / figures.rate:5.2f}x rate"
            )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each concurrent load")
    parser.add_argument("--sequential", type=int, default=200, help="requests for the sequential p50")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each measuring every target once")
    args = parser.parse_args()

    # Both servers stay up and the targets take turns, so a slow spell of the machine hits all.
    with floors() as floor_url, tempfile.TemporaryDirectory() as data, running_server(Path(data)) as url:
        uuid = one_invocation(url)
        targets = {
            "floor: one route": (floor_url, "/one-route/"),
            "floor: one deployment call": (floor_url, "/one-call/"),
            "GET /api/models": (url, "/api/models"),
            "GET /api/invocation/{uuid}": (url, f"/api/invocation/{uuid}"),
        }
        rounds = [
            {label: measure(*target, args.sequential, args.seconds) for label, target in targets.items()}
            for _ in range(args.rounds)
        ]
    figures = {label: median_of([round_[label] for round_ in rounds]) for label in targets}
    one_route, one_call = figures["floor: one route"], figures["floor: one deployment call"]

    print(
        f"medians of {args.rounds} rounds; sequential p50 of {args.sequential}; "
        f"{CLIENTS} keep-alive clients for {args.seconds:.0f} s"
    )
    print(f"  {'':<28}{'seq p50':>10}{'rate':>11}{'p50':>11}{'p99':>11}   vs one-call floor      vs one-route floor")
    print(row("floor: one route", one_route))
    print(row("floor: one deployment call", one_call))
    for label in ("GET /api/models", "GET /api/invocation/{uuid}"):
        print(row(label, figures[label], one_call, one_route))
    worst = max(
        max(figures[label].sequential_p50_ms / one_call.sequential_p50_ms, one_call.rate / figures[label].rate)
        for label in ("GET /api/models", "GET /api/invocation/{uuid}")
    )
    verdict = "meets" if worst <= TARGET else "misses"
    print(f"  worst ratio to the one-call floor: {worst:.2f}x, target <= {TARGET}x: {verdict} the target")


def median_of(rounds: list[Figures]) -> Figures:
    return Figures(
        statistics.median(figures.sequential_p50_ms for figures in rounds),
        statistics.median(figures.rate for figures in rounds),
        statistics.median(figures.p50_ms for figures in rounds),
        statistics.median(figures.p99_ms for figures in rounds),
    )


if __name__ == "__main__":
    main()
