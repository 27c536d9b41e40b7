"""Model affinity: model loads for 20 jobs alternating two checkpoints on two Base replicas.

Real tiny checkpoints (two copies of the demo checkpoint under two names) on a local Ray
cluster, four jobs in flight at a time; the loads are counted from the app's own metric
(``enfugue_model_loads_total``) on the cluster's metrics endpoint. Run with model affinity on
(the default: Serve routes a job to a replica holding its model) and off (any free replica).
Target: at most 3 loads with affinity on.

    python -m bench.affinity
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.common import deploy, local_serve, open_queue
from deployments.demo import DEMO_CHECKPOINT_NAME, write_demo_checkpoint
from serve_app.app import build_app
from serve_app.config import AppArgs, ReplicaOptions, RoleOptions

JOBS, REPLICAS, IN_FLIGHT, TARGET = 20, 2, 4, 3
CHECKPOINTS = (DEMO_CHECKPOINT_NAME, "demo-copy")


def app_args(data_dir: Path, affinity: bool) -> AppArgs:
    light, light_role = ReplicaOptions(num_cpus=0.1), RoleOptions(num_cpus=0.1)
    return AppArgs(
        data_dir=data_dir, ingress=light, store=light, planner=light, downloads=light,
        base=RoleOptions(num_replicas=REPLICAS, num_cpus=1), inpainter=light_role, refiner=light_role,
        upscaler=light_role,
        model_affinity=affinity,
    )  # fmt: skip


def loads_by_worker(metrics_url: str) -> dict[str, float]:
    """Base model loads per worker process, as the metrics endpoint has them now."""
    found: dict[str, float] = {}
    for line in httpx.get(metrics_url, timeout=10).text.splitlines():
        if line.startswith("ray_enfugue_model_loads_total{") and 'role="base"' in line:
            worker = re.search(r'WorkerId="([^"]+)"', line)
            found[worker.group(1) if worker else ""] = float(line.rsplit(" ", 1)[1])
    return found


def run(client: httpx.Client) -> None:
    def one(index: int) -> str:
        job = {"prompt": "a cat", "model": CHECKPOINTS[index % 2], "model_type": "checkpoint", "seed": index}
        job |= {"width": 64, "height": 64, "num_inference_steps": 4}
        uuid = client.post("/api/invoke", json=job).json()["data"]["uuid"]
        while (status := client.get(f"/api/invocation/{uuid}").json()["data"])["status"] in ("queued", "processing"):
            time.sleep(0.05)
        return status["status"]

    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        statuses = list(pool.map(one, range(JOBS)))
    if set(statuses) != {"completed"}:
        raise RuntimeError(f"not every job completed: {statuses}")


def count_loads(url: str, metrics_url: str, data_dir: Path, affinity: bool, seen: set[str]) -> int:
    """Deploy, run the jobs, and count the loads of this deployment's workers (not in ``seen``)."""
    deploy(build_app(app_args(data_dir, affinity)), url)
    with httpx.Client(base_url=url, timeout=120) as client:
        open_queue(client, JOBS)
        run(client)
    time.sleep(3)  # the metrics agent's next report
    counts = {worker: count for worker, count in loads_by_worker(metrics_url).items() if worker not in seen}
    seen |= set(counts)
    return int(sum(counts.values()))


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory() as folder, local_serve() as (url, metrics_port):
        data_dir = Path(folder)
        (data_dir / "checkpoint").mkdir()
        first = write_demo_checkpoint(data_dir / "checkpoint")
        shutil.copytree(first, first.with_name(CHECKPOINTS[1]))
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        seen = set(loads_by_worker(metrics_url))
        on = count_loads(url, metrics_url, data_dir, True, seen)
        off = count_loads(url, metrics_url, data_dir, False, seen)
    print(f"{JOBS} jobs alternating {len(CHECKPOINTS)} checkpoints on {REPLICAS} Base replicas, {IN_FLIGHT} in flight")
    print(f"  model loads with affinity on: {on} (target <= {TARGET}: {'met' if on <= TARGET else 'missed'})")
    print(f"  model loads with affinity off: {off}")


if __name__ == "__main__":
    main()
