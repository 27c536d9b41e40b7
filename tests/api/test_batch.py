"""``enfugue-serve batch`` (serve_app/batch.py) against the real app in-process, on the fake role."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from serve_app import batch
from serve_app.batch import LineError, login, run_batch
from serve_app.cli import main
from tests.conftest import serve_locally
from tests.fake_role import colour

SMALL = {"width": 64, "height": 64, "num_inference_steps": 2}


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_a_batch_records_each_line_and_a_rerun_runs_only_what_did_not_complete(
    local_app: TestClient, tmp_path: Path
) -> None:
    good = json.dumps({**SMALL, "prompt": "two", "seed": 20, "samples": 2})
    prompts = write_lines(tmp_path / "prompts.jsonl", "{not json", json.dumps({**SMALL, "width": 100}), "", good)
    out = tmp_path / "out"
    progress = io.StringIO()
    asked: list[str] = []
    local_app.event_hooks["request"].append(lambda request: asked.append(request.url.path))

    assert run_batch(prompts, out, local_app, concurrency=2, progress=progress, poll_s=0.02) == 1

    by_line = {entry["line"]: entry for entry in results(out)}
    assert sorted(by_line) == [1, 2, 4]  # the blank line is no input
    assert by_line[1]["status"] == "error" and by_line[1]["uuid"] is None
    assert by_line[1]["error"].startswith("not valid JSON")
    assert by_line[2]["status"] == "error" and by_line[2]["uuid"] is None
    assert by_line[2]["error"].startswith("400 BadRequestError: width"), by_line[2]["error"]
    assert by_line[4]["status"] == "completed" and len(by_line[4]["uuid"]) == 32
    assert by_line[4]["images"] == ["4_0.png", "4_1.png"] and "error" not in by_line[4]
    for index, seed in enumerate((20, 21)):
        with Image.open(out / f"4_{index}.png") as image:
            assert image.size == (64, 64) and image.getpixel((0, 0)) == colour(seed)
    assert sorted(path.name for path in out.iterdir()) == ["4_0.png", "4_1.png", "results.jsonl"]
    uuid = by_line[4]["uuid"]
    # Followed by its event stream, no polling; then each image fetched once.
    assert [path for path in asked if uuid in path] == [
        f"/api/invocation/{uuid}/events",
        f"/api/invocation/images/{uuid}_0.png",
        f"/api/invocation/images/{uuid}_1.png",
    ]
    assert "3/3 lines, 2 failed" in progress.getvalue()
    assert "batch: 3 lines, 1 completed (0 before this run), 2 not completed" in progress.getvalue()

    # The lines fixed and the batch run again: line 4 is skipped, the others run and complete.
    steps = len(local_app.role.steps)  # type: ignore[attr-defined]
    fixed = [json.dumps({**SMALL, "seed": 5}), json.dumps({**SMALL, "seed": 6}), "", good]
    write_lines(prompts, *fixed)
    assert run_batch(prompts, out, local_app, progress=io.StringIO(), poll_s=0.02) == 0
    again = results(out)[3:]
    assert sorted(entry["line"] for entry in again) == [1, 2]
    assert all(entry["status"] == "completed" for entry in again)
    assert len(local_app.role.steps) == steps + 2  # type: ignore[attr-defined]
    with Image.open(out / "2_0.png") as image:
        assert image.getpixel((0, 0)) == colour(6)

    # Everything done: nothing runs, and the exit code says so.
    report = io.StringIO()
    assert run_batch(prompts, out, local_app, progress=report) == 0
    assert len(results(out)) == 5
    assert "batch: 3 lines, 3 completed (3 before this run), 0 not completed" in report.getvalue()


def test_a_line_that_is_not_an_object_and_a_cut_record_are_not_completed(local_app: TestClient, tmp_path: Path) -> None:
    prompts = write_lines(tmp_path / "prompts.jsonl", "[1, 2]", json.dumps(SMALL))
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text('{"line": 2, "status": "comp')  # a kill mid-write
    assert run_batch(prompts, out, local_app, progress=None, poll_s=0.02) == 1
    cut, first, second = (out / "results.jsonl").read_text().splitlines()
    assert cut == '{"line": 2, "status": "comp'
    listed = {entry["line"]: entry for entry in map(json.loads, (first, second))}
    assert listed[1]["status"] == "error" and listed[1]["error"] == "not a JSON object but list"
    assert listed[2]["status"] == "completed"


def test_with_auth_on_a_batch_needs_a_token(data_dir: Path, tmp_path: Path) -> None:
    prompts = write_lines(tmp_path / "prompts.jsonl", json.dumps(SMALL))
    with serve_locally(data_dir, auth=True) as client:
        assert run_batch(prompts, tmp_path / "refused", client, progress=None) == 1
        (refused,) = results(tmp_path / "refused")
        assert refused["error"].startswith("401 AuthenticationError")
        with pytest.raises(LineError, match="401"):
            login(client, "enfugue", "wrong")
        client.headers["Authorization"] = "Bearer " + login(client, "enfugue", "enfugue")
        assert run_batch(prompts, tmp_path / "allowed", client, progress=None, poll_s=0.02) == 0


def test_a_full_queue_is_waited_out_and_a_lost_connection_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(batch, "time", SimpleNamespace(sleep=slept.append))
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "7"}, json={"errors": []}),
            httpx.ConnectError("refused"),
            httpx.Response(200, json={"data": {"uuid": "u"}}),
        ]
    )

    def answer(request: httpx.Request) -> httpx.Response:
        reply = next(answers)
        if isinstance(reply, Exception):
            raise reply
        return reply

    with httpx.Client(transport=httpx.MockTransport(answer), base_url="http://app") as client:
        assert batch._request(client, "POST", "/api/invoke", json={}).json() == {"data": {"uuid": "u"}}
    assert slept == [7.0, 2.0]

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    gave_up = pytest.raises(LineError, match=r"ConnectError: refused \(gave up after 3 tries\)")
    with httpx.Client(transport=httpx.MockTransport(down), base_url="http://app") as client, gave_up:
        batch._request(client, "GET", "/api", attempts=3)


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--concurrency", "0"], "--concurrency must be at least 1, got 0"),
        (["--username", "enfugue"], "--username and --password go together"),
        ([], "no such file"),
        (["--out", "nosuchscheme://bucket/results"], "--out 'nosuchscheme://bucket/results': "),
    ],
)
def test_the_command_refuses_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], complaint: str
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    if arguments:  # the last case has no file
        prompts.write_text("{}\n")
    with pytest.raises(SystemExit) as exit_:
        main(["batch", str(prompts), "--out", str(tmp_path / "out"), *arguments])  # a later --out wins
    assert exit_.value.code == 2 and complaint in capsys.readouterr().err


def test_a_stream_cut_short_falls_back_to_polling_and_a_withheld_output_is_recorded(tmp_path: Path) -> None:
    processing = {"status": "processing", "images": []}
    completed = {"status": "completed", "images": ["nsfw", "images/u_1.png"]}
    stream = f": nothing new\n\nid: 1\nevent: status\ndata: {json.dumps(processing)}\n\n"  # then a proxy cuts it
    replies = {
        "/api/invoke": httpx.Response(200, json={"data": {"uuid": "u"}}),
        "/api/invocation/u/events": httpx.Response(200, text=stream, headers={"content-type": "text/event-stream"}),
        "/api/invocation/u": httpx.Response(200, json={"data": completed}),
        "/api/invocation/images/u_1.png": httpx.Response(200, content=b"a png"),
    }
    transport = httpx.MockTransport(lambda request: replies[request.url.path])
    with httpx.Client(transport=transport, base_url="http://app") as client:
        result = batch._run_line(client, 7, json.dumps(SMALL), batch.Output(tmp_path), poll_s=0)
    assert result == {"line": 7, "uuid": "u", "status": "completed", "images": ["nsfw", "7_1.png"]}
    assert [path.name for path in tmp_path.iterdir()] == ["7_1.png"] and (tmp_path / "7_1.png").read_bytes() == b"a png"


def test_a_batch_writes_to_a_url_and_a_rerun_reads_its_record_there(local_app: TestClient, tmp_path: Path) -> None:
    import fsspec

    lines = (json.dumps({**SMALL, "seed": 4}), json.dumps({**SMALL, "width": 1}))
    prompts = write_lines(tmp_path / "prompts.jsonl", *lines)
    memory = fsspec.filesystem("memory")
    try:
        assert run_batch(prompts, "memory://batch-results/run", local_app, progress=None, poll_s=0.02) == 1
        recorded = memory.cat_file("/batch-results/run/results.jsonl").splitlines()
        first, second = sorted((json.loads(line) for line in recorded), key=lambda entry: entry["line"])
        assert (first["line"], first["status"], first["images"]) == (1, "completed", ["1_0.png"])
        assert (second["line"], second["status"]) == (2, "error")
        with Image.open(io.BytesIO(memory.cat_file("/batch-results/run/1_0.png"))) as image:
            assert image.getpixel((0, 0)) == colour(4)
        # Run again: the completed line is not run again; the failed one is, and recorded once more.
        assert run_batch(prompts, "memory://batch-results/run", local_app, progress=None, poll_s=0.02) == 1
        lines = memory.cat_file("/batch-results/run/results.jsonl").splitlines()
        assert sorted(json.loads(line)["line"] for line in lines) == [1, 2, 2] and lines[:2] == recorded
    finally:
        memory.rm("/batch-results", recursive=True)
