"""The app stopped and started again on the same data folder with one job running and two queued:
history, statuses and images are intact, and the three unfinished jobs run again after the start,
to the same images an undisturbed run makes. The stop does not wait for the running job: its
Planner is gone, so the role stops it at its next step."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import wait_for
from tests.integration.conftest import small_app_args
from tests.integration.test_serve_http import _finished, _invoke

pytestmark = pytest.mark.integration

# Long enough to be running when the app stops on this machine, short enough to run again after.
SLOW = {"width": 256, "height": 256, "num_inference_steps": 60, "chunking_size": 0}
# Jobs that wait behind it (a role takes one job at a time): how long they run adds nothing.
WAITING = {"width": 64, "height": 64, "num_inference_steps": 2}


def test_a_restart_keeps_history_and_runs_what_was_unfinished(ray_serve: str, tmp_path: Path) -> None:
    from ray import serve

    from deployments.demo import write_demo_checkpoint
    from serve_app.app import build_app
    from storage.files import DataPaths

    paths = DataPaths(tmp_path).ensure()
    write_demo_checkpoint(paths.models("checkpoint"))
    serve.run(build_app(small_app_args(paths.root)), name="enfugue", route_prefix="/")
    try:
        with httpx.Client(base_url=ray_serve, timeout=60) as http:
            done = _finished(http, _invoke(http, prompt="kept", width=64, height=64, num_inference_steps=2)["uuid"])
            image = http.get("/api/invocation/" + done["images"][0]).content
            running = _invoke(http, **SLOW, seed=1)["uuid"]
            wait_for(lambda: http.get(f"/api/invocation/{running}").json()["data"], lambda s: (s["step"] or 0) >= 1)
            queued = [_invoke(http, **WAITING, seed=seed)["uuid"] for seed in (2, 3)]

            stopping = time.monotonic()
            serve.delete("enfugue")
            stopped_in = time.monotonic() - stopping
            serve.run(build_app(small_app_args(paths.root)), name="enfugue", route_prefix="/")

            assert http.get(f"/api/invocation/{done['uuid']}").json()["data"] == done
            again = http.get("/api/invocation/" + done["images"][0])
            assert again.content == image and Image.open(io.BytesIO(again.content)).size == (64, 64)
            rerun = {uuid: _finished(http, uuid) for uuid in (running, *queued)}
            for status in rerun.values():
                assert status["status"] == "completed" and len(status["images"]) == 1, status
            assert rerun[running]["attempts"] == 2  # started before the stop, and again after
            assert all(rerun[uuid]["attempts"] >= 1 for uuid in queued)
            # The same request undisturbed makes the same image: the plan ran again with its seed.
            undisturbed = _finished(http, _invoke(http, **SLOW, seed=1)["uuid"])
            pixels = [
                Image.open(io.BytesIO(http.get("/api/invocation/" + status["images"][0]).content)).tobytes()
                for status in (rerun[running], undisturbed)
            ]
            assert pixels[0] == pixels[1]
            assert http.get("/api/invocation-history").json()["meta"]["count"] == 5
        # Serve waits up to 60 s for the app; a role finishing a job for nobody took all of it.
        assert stopped_in < 45, stopped_in
    finally:
        serve.delete("enfugue")


def test_a_redeploy_with_a_changed_option_ends_every_job_completed(ray_serve: str, tmp_path: Path) -> None:
    """`serve deploy` of a changed config while one job runs and two wait: the Planner and Base
    replicas are replaced. The old Planner hands the two waiting jobs back at once (the new one
    adopts them) and lets the running one finish on the old Base: every job ends completed, each
    run once, the running one's image as an undisturbed run makes it."""
    from ray import serve

    from deployments.demo import write_demo_checkpoint
    from serve_app.app import build_app
    from serve_app.config import ReplicaOptions, RoleOptions
    from storage.files import DataPaths

    paths = DataPaths(tmp_path).ensure()
    write_demo_checkpoint(paths.models("checkpoint"))
    args = small_app_args(paths.root)
    serve.run(build_app(args), name="enfugue", route_prefix="/")
    try:
        with httpx.Client(base_url=ray_serve, timeout=60) as http:
            running = _invoke(http, **SLOW, seed=1)["uuid"]
            wait_for(lambda: http.get(f"/api/invocation/{running}").json()["data"], lambda s: (s["step"] or 0) >= 1)
            waiting = [_invoke(http, **WAITING, seed=seed)["uuid"] for seed in (2, 3)]

            changed = args.model_copy(
                update={"planner": ReplicaOptions(num_cpus=0.3), "base": RoleOptions(num_cpus=0.9, num_gpus=0)}
            )
            serve.run(build_app(changed), name="enfugue", route_prefix="/")
            deployments = serve.status().applications["enfugue"].deployments
            assert {name: deployments[name].status for name in ("Planner", "Base")} == {
                "Planner": "HEALTHY", "Base": "HEALTHY"
            }  # fmt: skip

            ended = {uuid: _finished(http, uuid) for uuid in (running, *waiting)}
            for status in ended.values():
                assert status["status"] == "completed" and len(status["images"]) == 1, status
                assert status["attempts"] == 1, status
            undisturbed = _finished(http, _invoke(http, **SLOW, seed=1)["uuid"])
            pixels = [
                Image.open(io.BytesIO(http.get("/api/invocation/" + status["images"][0]).content)).tobytes()
                for status in (ended[running], undisturbed)
            ]
            assert pixels[0] == pixels[1]
    finally:
        serve.delete("enfugue")
