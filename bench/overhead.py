"""The cost of serving a job: invoke -> completed over HTTP against the direct diffusers call.

For each job, N interleaved runs of (a) the same pipeline called directly in this process with
one torch thread (a Base replica gets one CPU) and (b) POST /api/invoke, then following
GET /api/invocation/{uuid}/events until "completed" (or polling GET /api/invocation/{uuid} with
--poll), against `enfugue-serve run` started as a newcomer starts it. Prints medians, the ratio
and where the extra time goes: admission (the POST), in the server (the invocation's duration
minus the direct call), and noticing completion (the rest).

Target (issue 6): ratio <= 1.05 for 256x256/20 steps (goal 1.03), and the overhead at 50 steps
within noise of that at 20.

Run: make bench, or .venv/bin/python bench/overhead.py --runs 10
     [--baseline-source DIR --baseline-python PY]  also measures another checkout in the same run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import httpx  # noqa: E402

from bench.common import REPOSITORY, median_ms, running_server  # noqa: E402

JOBS = ((256, 20), (256, 50), (64, 4))  # (size, steps)
TARGET_RATIO = 1.05


@dataclass
class Samples:
    direct: list[float] = field(default_factory=list)
    served: list[float] = field(default_factory=list)
    admission: list[float] = field(default_factory=list)
    in_server: list[float] = field(default_factory=list)


def load_direct_pipeline(checkpoint: Path):  # noqa: ANN201 - torch types stay out of the signature
    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(1)
    pipe = StableDiffusionPipeline.from_pretrained(str(checkpoint), local_files_only=True, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def direct_seconds(pipe, size: int, steps: int) -> float:  # noqa: ANN001
    import torch

    started = time.perf_counter()
    pipe(
        "Hello, world!", width=size, height=size, num_inference_steps=steps,
        generator=torch.Generator("cpu").manual_seed(1),
    )  # fmt: skip
    return time.perf_counter() - started


def whole_canvas(client: httpx.Client) -> dict[str, int]:
    """What makes a canvas larger than the demo model (64 px) diffuse at once, as the direct call
    does: chunking_size 0, where the server chunks (checkouts from before chunking refuse the key)."""
    probe = {"width": 64, "height": 64, "num_inference_steps": 1, "chunking_size": 0}
    response = client.post("/api/invoke", json=probe)
    if response.status_code != 200:
        return {}
    uuid = response.json()["data"]["uuid"]
    follow(client, uuid)
    client.delete(f"/api/invocation/{uuid}")
    return {"chunking_size": 0}


def served_seconds(
    client: httpx.Client, size: int, steps: int, poll: float, extra: dict[str, int]
) -> tuple[float, float, float]:
    """(total, admission, the invocation's own duration) of one job over HTTP."""
    job = {"prompt": "Hello, world!", "width": size, "height": size, "num_inference_steps": steps, "seed": 1, **extra}
    started = time.perf_counter()
    uuid = client.post("/api/invoke", json=job).json()["data"]["uuid"]
    admitted = time.perf_counter()
    status = follow(client, uuid) if poll == 0 else poll_until_done(client, uuid, poll)
    total = time.perf_counter() - started
    if status["status"] != "completed":
        raise RuntimeError(f"job ended {status['status']}: {status.get('message')}")
    client.delete(f"/api/invocation/{uuid}")
    return total, admitted - started, status["duration"]


def follow(client: httpx.Client, uuid: str) -> dict:
    """The final status, from the invocation's event stream."""
    with client.stream("GET", f"/api/invocation/{uuid}/events") as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                status = json.loads(line.removeprefix("data: "))
    return status


def poll_until_done(client: httpx.Client, uuid: str, poll: float) -> dict:
    while True:
        status = client.get(f"/api/invocation/{uuid}").json()["data"]
        if status["status"] not in ("queued", "processing"):
            return status
        time.sleep(poll)


def measure(python: str, source: Path, runs: int, poll: float) -> dict[tuple[int, int], Samples]:
    results = {job: Samples() for job in JOBS}
    with tempfile.TemporaryDirectory() as data, running_server(Path(data), python, source) as url:
        checkpoint = next((Path(data) / "checkpoint").iterdir())
        pipe = load_direct_pipeline(checkpoint)
        with httpx.Client(base_url=url, timeout=120) as client:
            extra = whole_canvas(client)
            for size, steps in JOBS:  # warm-up: first loads, first calls
                direct_seconds(pipe, size, steps)
                served_seconds(client, size, steps, poll, extra)
            for run in range(runs):
                for job in JOBS:
                    samples = results[job]
                    if run % 2:  # which goes first alternates, so neither gains from the order
                        samples.direct.append(direct_seconds(pipe, *job))
                    total, admission, in_server = served_seconds(client, *job, poll, extra)
                    if not run % 2:
                        samples.direct.append(direct_seconds(pipe, *job))
                    samples.served.append(total)
                    samples.admission.append(admission)
                    samples.in_server.append(in_server)
    return results


def report(label: str, results: dict[tuple[int, int], Samples]) -> None:
    """Medians; the overhead is the median of each served run minus the direct run beside it
    (neighbours share the machine's speed of the moment, which drifts here by +-20 %)."""
    print(f"{label}")
    print(f"  {'job':<14}{'direct':>10}{'served':>10}{'overhead':>10}{'ratio':>8}{'admission':>11}"
          f"{'in server':>11}{'noticing':>10}")  # fmt: skip
    ratios = {}
    for (size, steps), samples in results.items():
        direct = median_ms(samples.direct)
        overhead = median_ms([s - d for s, d in zip(samples.served, samples.direct, strict=True)])
        admission = median_ms(samples.admission)
        in_server = median_ms([i - d for i, d in zip(samples.in_server, samples.direct, strict=True)])
        noticing = overhead - admission - in_server
        ratios[(size, steps)] = ratio = (direct + overhead) / direct
        print(
            f"  {f'{size}x{size}/{steps}':<14}{direct:8.1f}ms{median_ms(samples.served):8.1f}ms{overhead:8.1f}ms"
            f"{ratio:8.3f}{admission:9.1f}ms{in_server:9.1f}ms{noticing:8.1f}ms"
        )
    ratio = ratios[(256, 20)]
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"
    print(f"  256x256/20: ratio {ratio:.3f}, target <= {TARGET_RATIO} (goal 1.03): {verdict} the target")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--poll", type=float, default=0,
        help="poll the status every this many seconds; 0 (the default): follow the invocation's event stream",
    )  # fmt: skip
    parser.add_argument("--baseline-source", type=Path, help="another checkout to measure in the same run")
    parser.add_argument("--baseline-python", default=sys.executable, help="the Python to run the baseline with")
    parser.add_argument(
        "--baseline-events", action="store_true",
        help="the baseline has the event stream too: follow it there (else the baseline is polled)",
    )  # fmt: skip
    args = parser.parse_args()
    print(f"medians of {args.runs} interleaved runs after one warm-up each; direct = diffusers in this process")
    noticing = f"polling every {args.poll * 1000:.0f} ms" if args.poll else "following the event stream"
    if args.baseline_source and args.baseline_events:
        baseline = measure(args.baseline_python, args.baseline_source, args.runs, args.poll)
        report(f"baseline {args.baseline_source}, {noticing}", baseline)
    elif args.baseline_source:
        # A checkout from before the event stream existed can only be polled.
        poll = args.poll or 0.005
        baseline = measure(args.baseline_python, args.baseline_source, args.runs, poll)
        report(f"baseline {args.baseline_source}, polling every {poll * 1000:.0f} ms", baseline)
        if not args.poll:
            polled = measure(sys.executable, REPOSITORY, args.runs, poll)
            report(f"this checkout, polling every {poll * 1000:.0f} ms", polled)
    report(f"this checkout, {noticing}", measure(sys.executable, REPOSITORY, args.runs, args.poll))


if __name__ == "__main__":
    main()
