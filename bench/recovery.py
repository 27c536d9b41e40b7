"""How long admitted work waits when the process running it goes: the real app (demo checkpoint)
on a local Ray cluster in this process.

- Planner killed: a 256 px job has taken a few steps; SIGKILL of the Planner replica. Seconds
  from the kill until the job runs again (its status processing, attempts 2, a step taken), and
  until it ends.
- Redeploy: the same job running and two waiting when the app is deployed again with a changed
  option (every deployment replaced). Seconds from the redeploy until all three ended, and how
  often each ran: the running one finishes on the old replicas, the waiting ones are handed to
  the new Planner at once (attempts 1 each).

Prints every job that did not end completed (target: none) and each figure beside its target.

    python -m bench.recovery
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.common import deploy, local_serve

# The Store's lease (storage/leases.py: 30 s) runs out, then a Planner adopts the job (2 s).
KILL_TARGET_S = 45.0
LONG = {"prompt": "long", "width": 256, "height": 256, "num_inference_steps": 120, "chunking_size": 0, "seed": 1}
WAITING = {"width": 64, "height": 64, "num_inference_steps": 2}
FINISHED = ("completed", "error", "cancelled")


def app_args(data_dir: Path, planner_cpus: float = 0.25) -> Any:
    from serve_app.config import AppArgs, ReplicaOptions, RoleOptions

    light, light_role = ReplicaOptions(num_cpus=0.25), RoleOptions(num_cpus=0.25)
    return AppArgs(
        data_dir=data_dir, ingress=light, store=light, planner=ReplicaOptions(num_cpus=planner_cpus),
        base=RoleOptions(num_cpus=1, num_gpus=0), inpainter=light_role, refiner=light_role, upscaler=light_role,
    )  # fmt: skip


def status(http: httpx.Client, uuid: str) -> dict:
    return http.get(f"/api/invocation/{uuid}").json()["data"]


def until(http: httpx.Client, uuid: str, done: Callable[[dict], bool], timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while not done(current := status(http, uuid)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{uuid} still {current}")
        time.sleep(0.1)
    return current


def kill_planner() -> None:
    """SIGKILL the Planner replica's process, found among this cluster's named actors (another Ray
    cluster on the machine may run a replica of the same process title)."""
    import ray

    names = [
        actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == "serve" and "enfugue#Planner#" in actor["name"]
    ]  # fmt: skip
    if len(names) != 1:
        raise RuntimeError(f"not one Planner replica: {names}")
    planner = ray.get_actor(names[0], namespace="serve")
    os.kill(ray.get(planner.__ray_call__.remote(lambda _: os.getpid())), signal.SIGKILL)


def main() -> None:
    from ray import serve

    from deployments.demo import write_demo_checkpoint
    from serve_app.app import build_app
    from storage.files import DataPaths

    ended: list[dict] = []
    with tempfile.TemporaryDirectory() as folder, local_serve() as (url, _):
        paths = DataPaths(Path(folder)).ensure()
        write_demo_checkpoint(paths.models("checkpoint"))
        deploy(build_app(app_args(paths.root)), url)
        with httpx.Client(base_url=url, timeout=60) as http:
            uuid = http.post("/api/invoke", json=LONG).json()["data"]["uuid"]
            until(http, uuid, lambda s: (s["step"] or 0) >= 3)
            kill_planner()
            killed = time.monotonic()
            until(http, uuid, lambda s: s["attempts"] == 2 and (s["step"] or 0) >= 1)
            running_again = time.monotonic() - killed
            ended.append(until(http, uuid, lambda s: s["status"] in FINISHED))
            finished = time.monotonic() - killed

            running = http.post("/api/invoke", json={**LONG, "seed": 2}).json()["data"]["uuid"]
            until(http, running, lambda s: (s["step"] or 0) >= 3)
            waiting = [http.post("/api/invoke", json={**WAITING, "seed": n}).json()["data"]["uuid"] for n in (3, 4)]
            redeployed = time.monotonic()
            serve.run(build_app(app_args(paths.root, planner_cpus=0.3)), name="enfugue", route_prefix="/")
            statuses = [until(http, uuid, lambda s: s["status"] in FINISHED) for uuid in (running, *waiting)]
            all_ended = time.monotonic() - redeployed
            ended += statuses

    print(f"Planner killed mid-job: running again after {running_again:.1f} s (target <= {KILL_TARGET_S:.0f} s: "
          f"{'met' if running_again <= KILL_TARGET_S else 'missed'}), ended after {finished:.1f} s")  # fmt: skip
    attempts = ", ".join(str(s["attempts"]) for s in statuses)
    print(f"redeploy with one job running and two waiting: all ended {all_ended:.1f} s after it; attempts {attempts}"
          " (target 1, 1, 1)")  # fmt: skip
    failed = [s for s in ended if s["status"] != "completed"]
    print(f"jobs that did not end completed: {len(failed)} of {len(ended)} (target 0)")
    for status_ in failed:
        print(f"  {status_['uuid']}: {status_['status']} {status_.get('message')}")


if __name__ == "__main__":
    main()
