"""A stopping Planner hands its jobs back to the queue (the real Store and Planner in-process, the
fake role): those still waiting for a role at once, those a role has begun after they finish, or at
once when the whole server stops. Handed back, a job is queued and unleased: a Planner adopts it."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.api.test_invocations import SMALL, finished, invoke
from tests.conftest import serve_locally, wait_for
from tests.fake_role import FakeRole


def _status(client: TestClient, uuid: str) -> dict[str, Any]:
    return client.get(f"/api/invocation/{uuid}").json()["data"]


def _running_and_waiting(client: TestClient, steps: int) -> tuple[str, str]:
    running = invoke(client, {**SMALL, "num_inference_steps": steps})["uuid"]
    wait_for(lambda: _status(client, running), lambda s: (s["step"] or 0) >= 2)
    waiting = invoke(client, SMALL)["uuid"]
    wait_for(lambda: client.planner._jobs, lambda jobs: waiting in jobs)
    return running, waiting


def test_a_replaced_planner_gives_back_waiting_jobs_at_once_and_finishes_the_running_one(data_dir: Path) -> None:
    with serve_locally(data_dir, role=FakeRole(step_seconds=0.05)) as client:
        running, waiting = _running_and_waiting(client, steps=200)  # 10 s on the role
        stopping = threading.Thread(target=client.portal.call, args=(client.planner.hand_back, 60.0))
        stopping.start()
        # Given back while the running job runs on: unleased, so any Planner adopts it (this
        # adopt leases it to nobody: it stays queued), never started.
        wait_for(lambda: client.store.adopt(10), lambda adopted: adopted == [waiting], timeout=5)
        assert waiting not in client.planner._jobs
        assert _status(client, running)["status"] == "processing"
        handed = _status(client, waiting)
        assert handed["status"] == "queued" and handed["attempts"] == 0, handed
        stopping.join(timeout=30)
        assert not stopping.is_alive()
        status = finished(client, running)
        assert status["status"] == "completed" and status["attempts"] == 1, status
        assert len(client.role.steps) == 1  # the waiting job never reached the role
        assert client.planner._jobs == {}


def test_a_planner_stopping_with_its_application_gives_back_every_job_and_its_role_stops(data_dir: Path) -> None:
    role = FakeRole(step_seconds=0.05)
    with serve_locally(data_dir, role=role) as client:
        running, waiting = _running_and_waiting(client, steps=400)  # 20 s on the role
        # The running job may finish for a minute, but the application is found deleted at once.
        began = time.monotonic()
        client.portal.call(client.planner.hand_back, 60.0, asyncio.sleep(0))
        assert time.monotonic() - began < 20
        statuses = {uuid: _status(client, uuid) for uuid in (running, waiting)}
        for status in statuses.values():
            assert status["status"] == "queued" and status["step"] is None, status
        assert statuses[running]["attempts"] == 1 and statuses[waiting]["attempts"] == 0
        # The role stops the running job at its next step: nobody will take its result.
        wait_for(lambda: role.stopped_at, lambda stopped: len(stopped) == 1, timeout=5)
        assert sorted(client.store.adopt(10)) == sorted([running, waiting])
        # A job that reaches the stopping Planner is given back too, not run there.
        client.post(f"/api/invocation/{waiting}/cancel")  # one user may have 2 waiting
        late = invoke(client, SMALL)["uuid"]
        wait_for(lambda: client.store.adopt(10), lambda adopted: adopted == [late], timeout=5)
        assert client.planner._jobs == {} and _status(client, late)["status"] == "queued"


def test_a_job_handed_to_a_planner_that_already_runs_it_runs_once(data_dir: Path) -> None:
    from deployments.jobs import load_job
    from storage.shared import shared_storage

    with serve_locally(data_dir, role=FakeRole(step_seconds=0.05)) as client:
        uuid = invoke(client, {**SMALL, "num_inference_steps": 200})["uuid"]  # 10 s on the role
        wait_for(lambda: _status(client, uuid), lambda s: (s["step"] or 0) >= 2)
        # Its first hand-over came late (adopted meanwhile, after a Planner's restart).
        job = load_job(shared_storage(data_dir, None), uuid)
        client.portal.call(client.planner.run, uuid, job.plan, job.turn)
        status = finished(client, uuid)
        assert status["status"] == "completed" and status["attempts"] == 1, status
        assert len(client.role.steps) == 1
