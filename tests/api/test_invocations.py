"""/api/invoke and the invocation routes over HTTP: the real Store and Planner in-process, the fake role."""

from __future__ import annotations

import inspect
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import serve_locally, wait_for
from tests.fake_role import FakeRole, colour
from tests.images import data_uri, gradient

SMALL = {"width": 64, "height": 64, "num_inference_steps": 3}


def invoke(client: TestClient, body: dict[str, Any] | str) -> dict[str, Any]:
    content = body if isinstance(body, str) else json.dumps(body)
    response = client.post("/api/invoke", content=content)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def finished(client: TestClient, uuid: str) -> dict[str, Any]:
    return wait_for(
        lambda: client.get(f"/api/invocation/{uuid}").json()["data"],
        lambda status: status["status"] not in ("queued", "processing"),
    )


def output(client: TestClient, status: dict[str, Any], index: int = 0) -> Image.Image:
    response = client.get("/api/invocation/" + status["images"][index])
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def error_of(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    (error,) = response.json()["errors"]
    assert error["status"] == str(status)
    return error["detail"]


def test_the_seed_example_completes_with_a_png(local_app: TestClient, data_dir: Path) -> None:
    queued = invoke(local_app, '{"prompt": "Hello, world!", "width": 64, "height": 64, "num_inference_steps": 4}')
    assert queued["status"] == "queued" and queued["id"] == 1 and len(queued["uuid"]) == 32
    status = finished(local_app, queued["uuid"])
    assert status["status"] == "completed", status
    assert status["step"] == status["total"] and status["progress"] == 1.0
    assert status["rate"] > 0 and status["duration"] > 0
    image = output(local_app, status)
    assert image.size == (64, 64)
    plan = json.loads(image.text["plan"])
    assert plan["steps"][0]["prompt"] == "Hello, world!"
    assert image.text["enfugue-serve"] == "test"


def test_each_sample_gets_its_own_seed(local_app: TestClient) -> None:
    many = finished(local_app, invoke(local_app, {**SMALL, "seed": 20, "samples": 2})["uuid"])
    assert [output(local_app, many, index).getpixel((0, 0)) for index in (0, 1)] == [colour(20), colour(21)]
    plan = json.loads(output(local_app, many).text["plan"])
    assert plan["seed"] == 20 and plan["steps"][0]["seeds"] == [20, 21]


def test_without_a_seed_one_is_drawn_and_recorded(local_app: TestClient) -> None:
    status = finished(local_app, invoke(local_app, SMALL)["uuid"])
    seed = json.loads(output(local_app, status).text["plan"])["seed"]
    assert output(local_app, status).getpixel((0, 0)) == colour(seed)


def test_img2img_keeps_the_input_size(local_app: TestClient) -> None:
    body = {"image": data_uri(gradient(64, 48)), "strength": 0.5, "num_inference_steps": 4, "scheduler": "ddim"}
    status = finished(local_app, invoke(local_app, body)["uuid"])
    assert status["status"] == "completed", status
    assert status["total"] == 2
    assert output(local_app, status).size == (64, 48)
    (step,) = local_app.role.steps  # type: ignore[attr-defined]
    assert step.strength == 0.5 and step.source.summary() == {"width": 64, "height": 48}


def test_history_then_delete_removes_record_and_file(local_app: TestClient, data_dir: Path) -> None:
    uuid = invoke(local_app, {**SMALL, "prompt": "to delete"})["uuid"]
    finished(local_app, uuid)
    history = local_app.get("/api/invocation-history?limit=1").json()
    assert history["meta"] == {"params": {"limit": ["1"]}, "count": 1}
    (row,) = history["data"]
    assert row["type"] == "DiffusionInvocation" and row["attributes"]["id"] == uuid
    assert row["attributes"]["plan"]["steps"][0]["prompt"] == "to delete"
    assert (data_dir / "images" / f"{uuid}_0.png").exists()

    assert local_app.delete(f"/api/invocation/{uuid}").json() == {"meta": {"params": {}}, "data": None}
    assert not (data_dir / "images" / f"{uuid}_0.png").exists()
    assert error_of(local_app.get(f"/api/invocation/{uuid}"), 404)
    assert local_app.get("/api/invocation-history").json()["meta"]["count"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"num_inference_steps": -1}, "num_inference_steps"),
        ({"width": 100}, "width"),
        ({"scheduler": "fastest"}, "scheduler"),
        ({"model": "nope.safetensors"}, "model"),
        ({"model": "../enfugue.duckdb"}, "model"),
        ({"image": "data:image/png;base64,iVBORw0KGgo"}, "image"),
        ({"image": "data:text/plain;base64,aGVsbG8gd29ybGQ="}, "image"),
        ({"lora": "x.safetensors"}, "lora"),
    ],
)
def test_bad_input_is_400_naming_the_field(local_app: TestClient, body: dict[str, Any], field: str) -> None:
    detail = error_of(local_app.post("/api/invoke", json=body), 400)
    assert detail.startswith(field), detail
    assert local_app.get("/api").status_code == 200


def test_malformed_json_and_oversized_bodies(local_app: TestClient) -> None:
    assert "body: not valid JSON" in error_of(local_app.post("/api/invoke", content="{prompt"), 400)
    huge = json.dumps({"prompt": "x" * (3 * 1024 * 1024)})
    assert "body: larger than the limit" in error_of(local_app.post("/api/invoke", content=huge), 413)

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(40):
            yield b" " * (100 * 1024)

    assert error_of(local_app.post("/api/invoke", content=chunks()), 413)
    assert local_app.get("/api").status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/api/invocation/not-a-uuid", "/api/invocation/" + "f" * 32, "/api/invocation/images/" + "f" * 32 + "_0.png"],
)
def test_unknown_invocations_and_images_are_404(local_app: TestClient, path: str) -> None:
    assert error_of(local_app.get(path), 404)


@pytest.mark.parametrize("name", ["..%2Fenfugue.duckdb", "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "secret.txt"])
def test_image_traversal_is_refused(local_app: TestClient, name: str) -> None:
    response = local_app.get(f"/api/invocation/images/{name}")
    assert 400 <= response.status_code < 500 and "errors" in response.json()


def test_queue_limit_answers_429_with_retry_after(local_app: TestClient) -> None:
    assert local_app.post("/api/settings", json={"max_queued_invocations": 1}).status_code == 200
    statuses = [local_app.post("/api/invoke", json={**SMALL, "num_inference_steps": 50}) for _ in range(4)]
    refused = [response for response in statuses if response.status_code == 429]
    assert refused, [response.status_code for response in statuses]
    assert refused[0].headers["retry-after"].isdigit()
    assert refused[0].json()["errors"][0]["title"] == "TooManyRequestsError"
    for response in statuses:
        if response.status_code == 200:
            local_app.post(f"/api/invocation/{response.json()['data']['uuid']}/cancel")


def test_polling_sees_the_step_move_while_a_job_runs(data_dir: Path) -> None:
    with serve_locally(data_dir, role=FakeRole(step_seconds=0.05)) as client:
        uuid = invoke(client, {**SMALL, "num_inference_steps": 40})["uuid"]
        seen = set()
        status = wait_for(
            lambda: client.get(f"/api/invocation/{uuid}").json()["data"],
            lambda s: seen.add(s["step"]) or s["status"] == "completed",
        )
        moving = sorted(step for step in seen if step is not None and 0 < step < 40)
        assert len(moving) >= 3, seen  # writes are coalesced (every 0.15 s), not once per step
        assert status["step"] == status["total"] == 40


def test_a_cancel_stops_the_running_job_within_one_step(data_dir: Path) -> None:
    # Counted in steps, not milliseconds: a step long enough for the hops of a busy machine.
    role = FakeRole(step_seconds=0.25)
    with serve_locally(data_dir, role=role) as client:
        uuid = invoke(client, {**SMALL, "num_inference_steps": 400})["uuid"]
        wait_for(lambda: client.get(f"/api/invocation/{uuid}").json()["data"], lambda s: (s["step"] or 0) >= 2)
        assert client.post(f"/api/invocation/{uuid}/cancel").json()["data"]["status"] == "cancelled"
        cancelled_at = time.monotonic()
        # The role notices the closed stream at its next step; the replica is free for the next job.
        next_job = invoke(client, SMALL)["uuid"]
        assert finished(client, next_job)["status"] == "completed"
        status = finished(client, uuid)
        assert status["status"] == "cancelled" and status["step"] < 400 and status["images"] is None
        assert len(role.steps) == 2
        cancelled, _ = role.step_ends
        assert len(role.stopped_at) == 1 and len(cancelled) < 400
        assert len([end for end in cancelled if end > cancelled_at]) <= 1, (cancelled_at, cancelled[-3:])


class _BrokenUpscaler(FakeRole):
    """Fails in its run as a bug in a role would."""

    def run(self, model: Any, step: Any, inputs: list[Image.Image], reporter: Any) -> list[Image.Image]:
        if step.role == "upscaler":
            raise KeyError("internal detail")
        return super().run(model, step, inputs, reporter)


def test_a_failure_in_a_role_names_the_step_not_the_internals(data_dir: Path) -> None:
    with serve_locally(data_dir, role=_BrokenUpscaler()) as client:
        status = finished(client, invoke(client, {**SMALL, "outscale": 2, "upscale": "nearest"})["uuid"])
    assert status["status"] == "error"
    assert status["message"] == (
        "The invocation failed at step 2 of 2 (upscale on the upscaler role): it failed unexpectedly; "
        "the server's log has the details."
    )


def test_no_store_method_returns_image_bytes() -> None:
    import typing

    from storage.store import StoreService

    for name, method in inspect.getmembers(StoreService, inspect.isfunction):
        if not name.startswith("_"):
            returned = str(typing.get_type_hints(method).get("return"))
            assert "bytes" not in returned and "Image" not in returned, (name, returned)


def test_an_image_is_streamed_with_a_validator_and_long_caching(local_app: TestClient) -> None:
    status = finished(local_app, invoke(local_app, SMALL)["uuid"])
    path = "/api/invocation/" + status["images"][0]
    first = local_app.get(path)
    assert first.headers["cache-control"] == "private, max-age=31536000, immutable"
    again = local_app.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def sse_events(response: Any) -> list[tuple[str | None, str, Any]]:
    """(id, event, data) of each event of a text/event-stream body; comment lines are skipped."""
    found = []
    for block in response.text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if fields:
            found.append((fields.get("id"), fields["event"], json.loads(fields["data"])))
    return found


def test_the_event_stream_ends_at_completed_with_the_fields_of_the_last_poll(data_dir: Path) -> None:
    with serve_locally(data_dir, role=FakeRole(step_seconds=0.02)) as client:
        uuid = invoke(client, {**SMALL, "num_inference_steps": 30})["uuid"]
        streamed = client.get(f"/api/invocation/{uuid}/events")
        assert streamed.headers["content-type"].startswith("text/event-stream")
        events = sse_events(streamed)
        statuses = [data for _, kind, data in events]
        assert all(kind == "status" for _, kind, _ in events)
        assert statuses[-1] == client.get(f"/api/invocation/{uuid}").json()["data"]
        assert statuses[-1]["status"] == "completed"
        steps = [status["step"] for status in statuses if status["step"] is not None]
        assert len(events) >= 3 and steps == sorted(steps)
        ids = [int(identifier) for identifier, _, _ in events]
        assert ids == sorted(ids)
        # Resuming from the last id: nothing new to say about a finished invocation.
        again = client.get(f"/api/invocation/{uuid}/events", headers={"Last-Event-ID": str(ids[-1])})
        assert sse_events(again) == []
        assert sse_events(client.get(f"/api/invocation/{uuid}/events", headers={"Last-Event-ID": "1"}))


def test_the_event_stream_of_an_unknown_invocation_is_a_404(local_app: TestClient) -> None:
    assert error_of(local_app.get(f"/api/invocation/{'e' * 32}/events"), 404)


def test_a_refused_request_leaves_no_invocation_behind(local_app: TestClient) -> None:
    assert error_of(local_app.post("/api/invoke", json={"model": "nope.safetensors"}), 400).startswith("model")
    assert local_app.get("/api/invocation-history").json()["meta"]["count"] == 0
    assert local_app.get("/api").json()["data"]["system"]["invocations"]["queued"] == 0


def test_intermediate_images_are_listed_while_running_and_gone_after(data_dir: Path) -> None:
    with serve_locally(data_dir, role=FakeRole(step_seconds=0.03)) as client:
        assert client.post("/api/settings", json={"intermediate_steps": 5}).status_code == 200
        uuid = invoke(client, {**SMALL, "num_inference_steps": 60})["uuid"]
        running = wait_for(
            lambda: client.get(f"/api/invocation/{uuid}").json()["data"],
            lambda status: status["status"] == "processing" and status["images"],
        )
        (path,) = running["images"]
        assert path.startswith(f"intermediates/{uuid}_") and path.endswith("_0.png")
        shown = client.get("/api/invocation/" + path)
        assert shown.status_code == 200 and Image.open(io.BytesIO(shown.content)).size == (64, 64)
        status = finished(client, uuid)
        assert status["images"] == [f"images/{uuid}_0.png"]
        assert list((data_dir / "intermediates").iterdir()) == []
        assert error_of(client.get("/api/invocation/" + path), 404)
        assert error_of(client.get("/api/invocation/intermediates/not-a-name.png"), 400)
