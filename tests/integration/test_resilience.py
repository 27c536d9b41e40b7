"""Jobs never get stuck: a model replica or the Planner killed mid-job, on a real local Ray cluster."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import wait_for
from tests.images import data_uri, gradient
from tests.integration.test_serve_http import FINISHED, _finished, _invoke

pytestmark = pytest.mark.integration

# The canvas is larger than the demo model (64): chunking_size 0 diffuses it at once (not in windows).
LONG = {"prompt": "long", "width": 256, "height": 256, "num_inference_steps": 80, "seed": 1, "chunking_size": 0}
QUICK = {"prompt": "quick", "width": 64, "height": 64, "num_inference_steps": 2, "seed": 2}


def kill_replica(deployment: str) -> None:
    """SIGKILL the replica's process, asked of this session's cluster (its state API: another Ray
    cluster on the machine may run replicas of the same title)."""
    import ray
    from ray.util.state import list_actors

    filters = [("class_name", "=", f"ServeReplica:enfugue:{deployment}"), ("state", "=", "ALIVE")]
    pids = [actor.pid for actor in list_actors(address=ray.get_runtime_context().gcs_address, filters=filters)]
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)


def running(http: httpx.Client, uuid: str) -> dict:
    return wait_for(lambda: http.get(f"/api/invocation/{uuid}").json()["data"], lambda s: (s["step"] or 0) >= 2)


def test_a_model_replica_killed_mid_job_gets_the_step_again(http: httpx.Client) -> None:
    uuid = _invoke(http, **LONG)["uuid"]
    running(http, uuid)
    kill_replica("Base")
    # Retried on the replica Serve starts in its place (which loads the model again).
    status = _finished(http, uuid)
    assert status["status"] == "completed", status
    assert _finished(http, _invoke(http, **QUICK)["uuid"])["status"] == "completed"


def test_a_job_whose_planner_died_stops_on_its_role(http: httpx.Client) -> None:
    uuid = _invoke(http, **{**LONG, "num_inference_steps": 800})["uuid"]  # a minute or more on Base
    running(http, uuid)
    kill_replica("Planner")
    killed = time.monotonic()
    # Base stops the dead Planner's job at its next check (1 s): a job sent now waits for Serve to
    # replace the Planner (its health check: 10 s), not for the rest of the 800 steps behind it.
    # (The long job runs again once its lease runs out: cancelled here.)
    quick = _finished(http, _invoke(http, **QUICK)["uuid"])
    waited = time.monotonic() - killed
    http.post(f"/api/invocation/{uuid}/cancel")
    assert quick["status"] == "completed", quick
    assert waited < 30, waited


def test_the_planner_killed_mid_job_runs_it_again_to_the_same_image(http: httpx.Client) -> None:
    # From an image: the Planner that adopts the job reads it back from the storage's inputs.
    request = {**LONG, "image": data_uri(gradient(256, 256)), "strength": 0.9}
    undisturbed = _finished(http, _invoke(http, **request)["uuid"])
    uuid = _invoke(http, **request)["uuid"]
    running(http, uuid)
    kill_replica("Planner")
    killed = time.monotonic()
    # The lease (30 s) runs out, the Store queues the job again, a Planner adopts it (2 s).
    again = wait_for(lambda: http.get(f"/api/invocation/{uuid}").json()["data"], lambda s: s["attempts"] == 2,
                     timeout=120)  # fmt: skip
    assert time.monotonic() - killed < 90, again
    status = _finished(http, uuid)
    assert status["status"] == "completed" and status["attempts"] == 2, status
    first, second = (http.get("/api/invocation/" + s["images"][0]).content for s in (status, undisturbed))
    assert Image.open(io.BytesIO(first)).tobytes() == Image.open(io.BytesIO(second)).tobytes()


def test_the_store_killed_mid_job_still_ends_it_completed(http: httpx.Client) -> None:
    uuid = _invoke(http, **LONG)["uuid"]
    running(http, uuid)
    kill_replica("Store")
    # Serve starts another Store on the same DuckDB file; the job finishes and is recorded, or,
    # when its Planner's calls failed meanwhile, it is queued again and adopted.
    status = wait_for(lambda: _status_or_none(http, uuid), lambda s: s is not None and s["status"] in FINISHED,
                      timeout=240)  # fmt: skip
    assert status["status"] == "completed" and len(status["images"]) == 1, status
    assert _finished(http, _invoke(http, **QUICK)["uuid"])["status"] == "completed"


def _status_or_none(http: httpx.Client, uuid: str) -> dict | None:
    """The status, or None while the Store is being replaced (the ingress answers 5xx meanwhile)."""
    response = http.get(f"/api/invocation/{uuid}")
    return response.json()["data"] if response.status_code == 200 else None


def test_a_job_that_fails_for_its_input_is_not_run_again_and_says_why(
    http: httpx.Client, deployed: tuple[str, Path]
) -> None:
    from storage.files import DataPaths

    folder = DataPaths(deployed[1]).models("lora")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "broken.safetensors").write_bytes(b"not a safetensors file")
    uuid = _invoke(http, **QUICK, lora=[{"model": "broken.safetensors", "weight": 1.0}])["uuid"]
    status = _finished(http, uuid)
    assert status["status"] == "error" and "lora: broken.safetensors" in status["message"], status
    time.sleep(5)  # longer than a Planner takes to adopt a job that went back to the queue
    assert http.get(f"/api/invocation/{uuid}").json()["data"] == status
    assert status["attempts"] == 1
