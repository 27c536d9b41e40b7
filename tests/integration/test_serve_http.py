"""The whole flow on a real local Ray cluster over real HTTP: invoke, poll, image, history, delete."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import wait_for

pytestmark = pytest.mark.integration

FINISHED = ("completed", "error", "cancelled")


def _invoke(http: httpx.Client, **body: object) -> dict:
    # As curl -d sends it: a form content type with a JSON body.
    response = http.post(
        "/api/invoke", content=json.dumps(body), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _finished(http: httpx.Client, uuid: str) -> dict:
    return wait_for(
        lambda: http.get(f"/api/invocation/{uuid}").json()["data"], lambda s: s["status"] in FINISHED, timeout=120
    )


def test_invoke_poll_image_history_delete(http: httpx.Client, deployed: tuple[str, Path]) -> None:
    queued = _invoke(http, prompt="Hello, world!", width=64, height=64, num_inference_steps=4, seed=7)
    assert queued["status"] in ("queued", "processing")
    assert set(queued) >= {"id", "uuid", "status", "progress", "step", "total", "rate", "duration", "images"}

    status = _finished(http, queued["uuid"])
    assert status["status"] == "completed", status
    assert status["progress"] == 1.0 and status["step"] == status["total"]
    assert status["images"] == [f"images/{queued['uuid']}_0.png"]

    png = http.get("/api/invocation/" + status["images"][0])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    assert image.format == "PNG" and image.size == (64, 64)
    assert json.loads(image.text["plan"])["seed"] == 7

    history = http.get("/api/invocation-history").json()
    assert history["meta"]["count"] >= 1
    assert queued["uuid"] in [row["attributes"]["id"] for row in history["data"]]

    assert http.delete(f"/api/invocation/{queued['uuid']}").json() == {"meta": {"params": {}}, "data": None}
    assert http.get(f"/api/invocation/{queued['uuid']}").status_code == 404
    assert not (deployed[1] / "images" / f"{queued['uuid']}_0.png").exists()


def test_same_seed_same_pixels_across_the_cluster(http: httpx.Client) -> None:
    def pixels(seed: int) -> bytes:
        uuid = _invoke(http, prompt="a cat", width=64, height=64, num_inference_steps=3, seed=seed)["uuid"]
        status = _finished(http, uuid)
        assert status["status"] == "completed", status
        return Image.open(io.BytesIO(http.get("/api/invocation/" + status["images"][0]).content)).tobytes()

    first, again, other = pixels(11), pixels(11), pixels(12)
    assert first == again
    assert first != other


def test_bad_input_is_a_400_and_the_server_keeps_serving(http: httpx.Client) -> None:
    response = http.post("/api/invoke", content='{"num_inference_steps": -1}')
    assert response.status_code == 400
    assert "num_inference_steps" in response.json()["errors"][0]["detail"]
    assert http.get("/api").status_code == 200


def test_the_console_is_served_at_the_root_with_its_files(http: httpx.Client) -> None:
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/console/console.js", "/console/console.css"):
        assert asset in page.text
        assert http.get(asset).status_code == 200


def test_cancel_closes_the_role_stream_and_the_queued_job_starts(http: httpx.Client) -> None:
    long = _invoke(http, prompt="long", width=256, height=256, num_inference_steps=400, seed=1, chunking_size=0)["uuid"]
    seen = wait_for(lambda: http.get(f"/api/invocation/{long}").json()["data"], lambda s: (s["step"] or 0) >= 2)
    assert seen["status"] == "processing" and seen["total"] >= 400  # PNDM, the default, adds one
    quick = _invoke(http, prompt="next", width=64, height=64, num_inference_steps=2, seed=2)["uuid"]
    assert http.get(f"/api/invocation/{quick}").json()["data"]["status"] == "queued"
    assert http.post(f"/api/invocation/{long}/cancel").json()["data"]["status"] == "cancelled"
    started = time.monotonic()
    assert _finished(http, quick)["status"] == "completed"
    # The long job would hold the one Base replica for half a minute more had it not stopped.
    assert time.monotonic() - started < 10
    status = http.get(f"/api/invocation/{long}").json()["data"]
    assert status["status"] == "cancelled" and status["step"] < 400 and status["images"] is None


def test_the_event_stream_ends_at_completed_with_the_fields_of_the_last_poll(http: httpx.Client) -> None:
    uuid = _invoke(http, prompt="streamed", width=128, height=128, num_inference_steps=20, seed=3, chunking_size=0)[
        "uuid"
    ]
    statuses = []
    with http.stream("GET", f"/api/invocation/{uuid}/events") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        for line in events.iter_lines():
            if line.startswith("data: "):
                statuses.append(json.loads(line.removeprefix("data: ")))
    assert statuses[-1]["status"] == "completed"
    assert statuses[-1] == http.get(f"/api/invocation/{uuid}").json()["data"]
    steps = [status["step"] for status in statuses if status["step"] is not None]
    assert steps == sorted(steps) and len(statuses) >= 2


def test_stop_as_a_user_leaves_another_users_job_running(http: httpx.Client) -> None:
    with _users(http, ("ann", "ben")) as (ann, ben):
        slow = {"width": 256, "height": 256, "num_inference_steps": 400, "chunking_size": 0}
        hers = http.post("/api/invoke", json=slow, headers=ann).json()["data"]["uuid"]
        his = http.post("/api/invoke", json=slow, headers=ben).json()["data"]["uuid"]
        assert http.post("/api/invocation/stop", headers=ann).json()["data"] == {"cancelled": [hers]}
        assert http.get(f"/api/invocation/{his}", headers=ben).json()["data"]["status"] in ("queued", "processing")
        his_status = lambda: http.get(f"/api/invocation/{his}", headers=ben).json()["data"]  # noqa: E731
        wait_for(his_status, lambda status: (status["step"] or 0) >= 1)  # running, not stopped
        assert http.post("/api/invocation/stop", headers=ben).json()["data"] == {"cancelled": [his]}


def test_jobs_wait_round_robin_between_users_and_in_order_within_one(http: httpx.Client) -> None:
    """On one Base replica, user A queues six jobs, then user B two: B's first starts second, the
    two users alternate while both wait, and each user's run in the order they were sent (eight
    in one exact order: by chance, about once in 40,000 runs).

    Ordered by when each ended: a job ends once its Planner has saved its images and told the
    Store, while the role already runs the next, so each job is long enough (60 steps, about 4 s
    here) that a slow save cannot make a job end after the one that ran next."""
    roomy = {"max_queued_invocations": 16, "max_queued_invocations_per_user": 8}
    with _users(http, ("cal", "dee"), roomy) as (cal, dee):
        job = {"width": 64, "height": 64, "num_inference_steps": 60, "chunking_size": 0}
        # The first runs while the others are sent: they all wait for it.
        sent = [(cal, {**job, "num_inference_steps": 200})] + [(cal, job)] * 5 + [(dee, job)] * 2
        uuids = []
        for headers, body in sent:
            response = http.post("/api/invoke", json=body, headers=headers)
            assert response.status_code == 200, response.text
            uuids.append(response.json()["data"]["uuid"])
        for (headers, _), uuid in zip(sent, uuids, strict=True):
            status = wait_for(
                lambda: http.get(f"/api/invocation/{uuid}", headers=headers).json()["data"],  # noqa: B023
                lambda s: s["status"] in FINISHED, timeout=300,
            )  # fmt: skip
            assert status["status"] == "completed", status
        ended = {}
        for headers in (cal, dee):
            for item in http.get("/api/invocation-history", headers=headers).json()["data"]:
                attributes = item["attributes"]
                began = datetime.fromisoformat(attributes["started"]).timestamp()
                ended[attributes["id"]] = began + attributes["duration"]
        a, b = uuids[:6], uuids[6:]
        assert sorted(uuids, key=ended.__getitem__) == [a[0], b[0], a[1], b[1], a[2], a[3], a[4], a[5]]


@contextlib.contextmanager
def _users(http: httpx.Client, names: tuple[str, ...], settings: dict | None = None) -> Iterator[list[dict]]:
    """Auth on (with ``settings`` changed too) and a new user per name; yields their logged-in
    headers. After: auth off and the settings back to what they were."""
    admin = {"Authorization": "Bearer " + _login(http, "enfugue", "enfugue")}
    before = http.get("/api/settings", headers=admin).json()["data"]
    assert http.post("/api/settings", json={"auth": True, **(settings or {})}, headers=admin).status_code == 200
    try:
        admin = {"Authorization": "Bearer " + _login(http, "enfugue", "enfugue")}
        for name in names:
            body = {"username": name, "new_password": "pw", "repeat_password": "pw"}
            assert http.post("/api/users", json=body, headers=admin).status_code == 200
        yield [{"Authorization": "Bearer " + _login(http, name, "pw")} for name in names]
    finally:
        restored = {key: before[key] for key in settings or {}}
        http.post("/api/settings", json={"auth": False, **restored}, headers=admin)


def _login(http: httpx.Client, username: str, password: str) -> str:
    response = http.post("/api/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["data"]["attributes"]["access_token"]
