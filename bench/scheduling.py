"""How jobs spread over model replicas: fake roles of fixed latency on a local Ray cluster.

1. Fixed replicas: 16 jobs on 4 Base replicas, all submitted at once; the makespan (first
   submit to last completion) against the ideal, 16 x one job's time / 4 (target: <= 1.05x),
   the median of BURSTS bursts (one burst's figure moves by +-0.1 s on a 2-core machine).
2. Autoscaling: Base with autoscaling_config min 1, max 4, target_ongoing_requests 1, under the
   same load: the replica count over time (target: grows 1 -> 4, back to 1 after the load).

    python -m bench.scheduling
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.common import deploy, local_serve, open_queue
from deployments.role import role_deployment
from serve_app.app import ROLES, bind_app
from serve_app.config import AppArgs, ReplicaOptions, RoleOptions
from tests.fake_role import DEMO_NAME, FakeRole, write_fake_checkpoint

JOBS, REPLICAS, STEPS, STEP_SECONDS = 16, 4, 20, 0.1
BURSTS = 3
TARGET = 1.05
# Quick to react (the Serve config of a GPU cluster waits longer: a model load is costly).
AUTOSCALING = {
    "min_replicas": 1, "max_replicas": REPLICAS, "target_ongoing_requests": 1,
    "upscale_delay_s": 1, "downscale_delay_s": 5,
}  # fmt: skip


def fake_app(data_dir: Path, base: RoleOptions, step_seconds: float = STEP_SECONDS) -> object:
    light, light_role = ReplicaOptions(num_cpus=0.1), RoleOptions(num_cpus=0.1)
    args = AppArgs(
        data_dir=data_dir, ingress=light, store=light, planner=light, downloads=light,
        base=base, inpainter=light_role, refiner=light_role, upscaler=light_role,
    )  # fmt: skip
    fakes = {name: role_deployment(FakeRole, deployment.name) for name, deployment in ROLES.items()}
    return bind_app(args, fakes, (step_seconds,))


def run_jobs(client: httpx.Client) -> float:
    """JOBS clients each submit one job at once and follow its event stream to its end; seconds
    from the start to the last one's end."""
    job = {"prompt": "a fake", "width": 64, "height": 64, "num_inference_steps": STEPS}

    def one(seed: int) -> tuple[str, float]:
        answer = client.post("/api/invoke", json={**job, "seed": seed})
        answer.raise_for_status()
        with client.stream("GET", f"/api/invocation/{answer.json()['data']['uuid']}/events") as events:
            for line in events.iter_lines():
                if line.startswith("data: "):
                    status = json.loads(line.removeprefix("data: "))["status"]
        return status, time.perf_counter()

    started = time.perf_counter()
    with ThreadPoolExecutor(JOBS) as clients:
        ends = list(clients.map(one, range(JOBS)))
    failed = [status for status, _ in ends if status != "completed"]
    if failed:
        raise RuntimeError(f"{len(failed)} jobs did not complete: {failed}")
    return max(end for _, end in ends) - started


def base_replicas() -> int:
    from ray import serve

    deployment = serve.status().applications["enfugue"].deployments["Base"]
    return deployment.replica_states.get("RUNNING", 0)


def watch_replicas(samples: list[tuple[float, int]], stop: threading.Event, began: float) -> None:
    while not stop.is_set():
        samples.append((time.perf_counter() - began, base_replicas()))
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--step-seconds", type=float, default=STEP_SECONDS,
        help=f"a fake step's latency (default {STEP_SECONDS}: {STEPS * STEP_SECONDS:.0f} s jobs)",
    )  # fmt: skip
    step_seconds = parser.parse_args().step_seconds
    ideal = JOBS * STEPS * step_seconds / REPLICAS
    with tempfile.TemporaryDirectory() as folder, local_serve() as (url, _):
        data_dir = Path(folder)
        write_fake_checkpoint(data_dir / "checkpoint" / DEMO_NAME)
        with httpx.Client(base_url=url, timeout=60) as client:
            deploy(fake_app(data_dir, RoleOptions(num_replicas=REPLICAS, num_cpus=0.1), step_seconds), url)
            open_queue(client, JOBS)
            run_jobs(client)  # warm: each replica's first job, the Planner's handle
            makespans = [run_jobs(client) for _ in range(BURSTS)]
            makespan = statistics.median(makespans)
            print(f"fixed: {JOBS} jobs of {STEPS * step_seconds:.1f} s on {REPLICAS} replicas, {BURSTS} bursts")
            print(f"  makespans {', '.join(f'{value:.2f}' for value in makespans)} s")
            print(
                f"  median makespan {makespan:.2f} s, ideal {ideal:.2f} s: ratio {makespan / ideal:.3f} "
                f"(target <= {TARGET})"
            )

            autoscaled = RoleOptions(num_cpus=0.1, autoscaling_config=AUTOSCALING)
            deploy(fake_app(data_dir, autoscaled, step_seconds), url)
            open_queue(client, JOBS)
            while base_replicas() != 1:  # the fixed deployment's replicas stopping
                time.sleep(0.5)
            samples: list[tuple[float, int]] = []
            stop = threading.Event()
            began = time.perf_counter()
            watcher = threading.Thread(target=watch_replicas, args=(samples, stop, began), daemon=True)
            watcher.start()
            makespan = run_jobs(client)
            loaded = time.perf_counter() - began
            deadline = time.monotonic() + 120
            while base_replicas() > 1 and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(1)
            stop.set()
            watcher.join()
    peak = max(count for _, count in samples)
    grew = next((at for at, count in samples if count == peak), None)
    back = next((at for at, count in samples if at > loaded and count == 1), None)
    print(f"autoscaled (min 1, max {REPLICAS}): makespan {makespan:.2f} s for the same {JOBS} jobs")
    print(f"  replicas: started at {samples[0][1]}, peak {peak} at {grew:.1f} s, load over at {loaded:.1f} s, ")
    print(f"  back to 1 at {back:.1f} s" if back is not None else "  not back to 1 within 120 s")
    changes = [sample for index, sample in enumerate(samples) if index == 0 or sample[1] != samples[index - 1][1]]
    print("  timeline (s: replicas): " + ", ".join(f"{at:.1f}: {count}" for at, count in changes))
    print(f"  target: 1 -> {REPLICAS} -> 1: {'met' if samples[0][1] == 1 and peak == REPLICAS and back else 'missed'}")


if __name__ == "__main__":
    main()
