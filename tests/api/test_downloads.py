"""Downloads against an HTTP server this test starts on 127.0.0.1: the model folders fill up, and
nothing half-written or outside them ever appears."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_invocations import error_of
from tests.conftest import serve_locally, wait_for

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Files(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        if self.path == "/model.safetensors":
            self._send(PAYLOAD)
        elif self.path == "/tiny.safetensors":  # a valid header and no tensors
            self._send(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
        elif self.path == "/slow.safetensors":  # a quarter of the payload a second
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            for offset in range(0, len(PAYLOAD), len(PAYLOAD) // 40):
                self.wfile.write(PAYLOAD[offset : offset + len(PAYLOAD) // 40])
                time.sleep(0.1)
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/model.safetensors")
            self.end_headers()
        elif self.path == "/to-a-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.end_headers()
        elif self.path == "/broken":  # promises the whole payload, sends a tenth, hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 10])
        else:
            self.send_error(404)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        return None


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def start(client: TestClient, url: str, filename: str, **extra: Any) -> Any:
    return client.post("/api/download", json={"type": "lora", "url": url, "filename": filename, **extra})


def finished(client: TestClient, download_id: int) -> dict[str, Any]:
    return wait_for(
        lambda: next(d for d in client.get("/api/download").json()["data"] if d["id"] == download_id),
        lambda download: download["status"] in ("complete", "error", "canceled"),
    )


def no_partial_files(folder: Path) -> bool:
    return not [path for path in folder.iterdir() if path.name.startswith(".")]


def test_a_download_completes_with_progress_and_is_listed(local_app: TestClient, origin: str, data_dir: Path) -> None:
    started = start(local_app, f"{origin}/redirect", "styles.safetensors")
    assert started.status_code == 200, started.text
    assert started.json()["data"]["status"] in ("queued", "downloading")
    done = finished(local_app, started.json()["data"]["id"])
    assert done["status"] == "complete" and done["downloaded"] == done["total"] == len(PAYLOAD)
    assert done["elapsed"] > 0 and done["destination"] == "lora/styles.safetensors"
    assert (data_dir / "lora" / "styles.safetensors").read_bytes() == PAYLOAD
    assert "styles.safetensors" in local_app.get("/api/lora").json()["data"]
    assert no_partial_files(data_dir / "lora")
    system = local_app.get("/api").json()["data"]["system"]["downloads"]
    assert system == {"active": 0, "queued": 0, "total": 1}
    # The file exists now: 409, unless overwriting is asked for.
    assert "exists" in error_of(start(local_app, f"{origin}/model.safetensors", "styles.safetensors"), 409)
    again = start(local_app, f"{origin}/model.safetensors", "styles.safetensors", overwrite=True)
    assert finished(local_app, again.json()["data"]["id"])["status"] == "complete"


def test_a_download_can_be_cancelled_and_leaves_nothing(local_app: TestClient, origin: str, data_dir: Path) -> None:
    download = start(local_app, f"{origin}/slow.safetensors", "slow.safetensors").json()["data"]
    wait_for(lambda: local_app.get("/api/download").json()["data"][-1], lambda d: d["downloaded"] > 0)
    cancelled = local_app.post("/api/download/cancel", json={"url": f"{origin}/slow.safetensors"}).json()["data"]
    assert [d["status"] for d in cancelled] == ["canceled"]
    assert finished(local_app, download["id"])["status"] == "canceled"
    assert not (data_dir / "lora" / "slow.safetensors").exists() and no_partial_files(data_dir / "lora")


def test_a_full_queue_answers_429(local_app: TestClient, origin: str) -> None:
    local_app.post("/api/settings", json={"max_concurrent_downloads": 1, "max_queued_downloads": 1})
    assert start(local_app, f"{origin}/slow.safetensors", "a.safetensors").status_code == 200
    assert start(local_app, f"{origin}/slow.safetensors", "b.safetensors").status_code == 200  # waits
    refused = start(local_app, f"{origin}/slow.safetensors", "c.safetensors")
    assert error_of(refused, 429) and refused.headers["retry-after"].isdigit()
    local_app.post("/api/download/cancel", json={"url": f"{origin}/slow.safetensors"})


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"url": "URL", "filename": "../../enfugue.duckdb"}, "filename: '../../enfugue.duckdb' must be a plain"),
        ({"url": "URL", "filename": "sub/x.safetensors"}, "must be a plain file name"),
        ({"url": "URL", "filename": ".hidden.safetensors"}, "must be a plain file name"),
        ({"url": "URL", "filename": "notes.txt"}, "filename: must end in one of"),
        ({"url": "file:///etc/passwd", "filename": "x.safetensors"}, "url: only http:// and https://"),
        ({"url": "ftp://example.com/x", "filename": "x.safetensors"}, "url: only http:// and https://"),
    ],
)
def test_bad_downloads_are_refused(local_app: TestClient, origin: str, body: dict, detail: str) -> None:
    body = {"type": "lora", **body, "url": body["url"].replace("URL", f"{origin}/model.safetensors")}
    assert detail in error_of(local_app.post("/api/download", json=body), 400)


@pytest.mark.parametrize(
    ("path", "message"),
    [("/to-a-file", "redirect: only http:// and https://"), ("/broken", "1048576"),
     ("/missing", "HTTP 404")],
)  # fmt: skip
def test_failed_transfers_leave_no_file(
    local_app: TestClient, origin: str, data_dir: Path, path: str, message: str
) -> None:
    download = start(local_app, f"{origin}{path}", "failed.safetensors").json()["data"]
    done = finished(local_app, download["id"])
    assert done["status"] == "error" and message in done["message"]
    assert not (data_dir / "lora" / "failed.safetensors").exists() and no_partial_files(data_dir / "lora")


def test_a_size_cap_stops_a_large_file(data_dir: Path, origin: str) -> None:
    with serve_locally(data_dir, max_download_bytes=1000) as client:
        download = start(client, f"{origin}/model.safetensors", "big.safetensors").json()["data"]
        done = finished(client, download["id"])
        assert done["status"] == "error" and "larger than the limit of 1000 bytes" in done["message"]
        assert not (data_dir / "lora" / "big.safetensors").exists()


def test_a_downloaded_checkpoint_can_be_invoked_at_once(local_app: TestClient, origin: str, data_dir: Path) -> None:
    # The fake role only needs the file to exist; the ingress reads its header for its size.
    body = {"type": "checkpoint", "url": f"{origin}/tiny.safetensors", "filename": "fresh.safetensors"}
    download = local_app.post("/api/download", json=body).json()["data"]
    assert finished(local_app, download["id"])["status"] == "complete"
    assert "fresh.safetensors" in local_app.get("/api/checkpoints").json()["data"]
    invoked = local_app.post("/api/invoke", json={"model": "fresh.safetensors", "width": 64, "height": 64})
    assert invoked.status_code == 200, invoked.text
    # A file that only claims to be one is a clear 400, not a crash.
    garbage = {"type": "checkpoint", "url": f"{origin}/model.safetensors", "filename": "garbage.safetensors"}
    fetched = local_app.post("/api/download", json=garbage).json()["data"]
    assert finished(local_app, fetched["id"])["status"] == "complete"
    detail = error_of(local_app.post("/api/invoke", json={"model": "garbage.safetensors"}), 400)
    assert detail == "model: garbage.safetensors is not a .safetensors file (its header length is impossible)"


def test_downloads_are_for_administrators(data_dir: Path, origin: str) -> None:
    with serve_locally(data_dir, auth=True) as client:
        assert error_of(client.get("/api/download"), 401)
        client.store.accounts.create("alice", "pw", None, None, False)  # type: ignore[attr-defined]
        token = client.post("/api/login", json={"username": "alice", "password": "pw"}).json()["data"]
        headers = {"Authorization": f"Bearer {token['attributes']['access_token']}"}
        assert error_of(client.get("/api/download", headers=headers), 403)
        body = {"type": "lora", "url": f"{origin}/model.safetensors", "filename": "x.safetensors"}
        assert error_of(client.post("/api/download", json=body, headers=headers), 403)
