"""The repository's Serve config deploys with Serve's own command on the session's cluster.

Only what this machine lacks is changed: no GPUs (the model roles' num_gpus and accelerator
type), fewer CPUs per replica, and a data folder of its own. The structure, the import path, the
per-role options and the autoscaling configs go through `serve run CONFIG` as on a cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODEL_ROLES = ("base", "inpainter", "refiner", "upscaler")


def for_this_machine(data_dir: Path) -> dict:
    config = yaml.safe_load((ROOT / "serve_app" / "serve_config.yaml").read_text())
    (application,) = config["applications"]
    args = application["args"]
    args["data_dir"] = str(data_dir)
    for name in ("ingress", "store", "planner", "downloads", *MODEL_ROLES):
        args[name]["num_cpus"] = 0.25
    for name in MODEL_ROLES:
        args[name]["num_gpus"] = 0
        args[name].pop("accelerator_type", None)
    return config


def test_the_serve_config_deploys_with_serve_run(ray_serve: str, tmp_path: Path) -> None:
    import ray
    from ray import serve

    from deployments.demo import write_demo_checkpoint
    from storage.files import DataPaths

    paths = DataPaths(tmp_path / "data").ensure()
    write_demo_checkpoint(paths.models("checkpoint"))
    config = tmp_path / "serve_config.yaml"
    config.write_text(yaml.safe_dump(for_this_machine(paths.root)))
    serve_cli = str(Path(sys.executable).with_name("serve"))
    address = ray.get_runtime_context().gcs_address
    deployed = subprocess.run(
        [serve_cli, "run", "--non-blocking", "--address", address, str(config)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    try:
        status = wait_for(
            lambda: serve.status().applications.get("enfugue"), lambda app: app and app.status == "RUNNING", timeout=240
        )
        assert {"Base", "Store", "Planner", "Ingress"} <= set(status.deployments)
        # Roles that scale from zero hold no replica while idle; Base keeps its minimum of one.
        assert status.deployments["Base"].replica_states.get("RUNNING") == 1
        assert not status.deployments["Refiner"].replica_states.get("RUNNING")
        answer = httpx.get(ray_serve + "/api", timeout=30)
        assert answer.status_code == 200 and answer.json()["data"]["status"] == "idle", answer.text
        job = httpx.post(
            ray_serve + "/api/invoke",
            json={"prompt": "configured", "width": 64, "height": 64, "num_inference_steps": 2},
            timeout=30,
        )
        assert job.status_code == 200, job.text
        uuid = job.json()["data"]["uuid"]
        done = wait_for(
            lambda: httpx.get(f"{ray_serve}/api/invocation/{uuid}", timeout=30).json()["data"],
            lambda s: s["status"] not in ("queued", "processing"), timeout=120,
        )  # fmt: skip
        assert done["status"] == "completed", done
    finally:
        serve.delete("enfugue")
