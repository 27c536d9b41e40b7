"""The app's Prometheus metrics, scraped from the session cluster's Ray metrics endpoint after jobs."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.integration

PAYLOAD = b"not really a LoRA, " * 1000


class _File(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD)

    def log_message(self, *_: Any) -> None:
        return None


def samples(text: str, name: str) -> dict[str, float]:
    """``ray_<name>`` samples as {labels that matter: value}, summed over the processes reporting."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(rf"ray_{name}(\{{.*\}})? ([0-9.e+-]+)$", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            key = ",".join(f"{k}={labels[k]}" for k in ("status", "role", "le") if k in labels)
            found[key] = found.get(key, 0.0) + float(match.group(2))
    return found


def test_the_metrics_appear_after_a_job_and_a_download(http: httpx.Client, metrics_port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _File)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/style.safetensors"
        download = http.post(
            "/api/download", json={"type": "lora", "url": url, "filename": "metrics-style.safetensors"}
        )
        assert download.status_code == 200, download.text
        job = http.post("/api/invoke", json={"prompt": "a metric", "width": 64, "height": 64, "num_inference_steps": 6})
        assert job.status_code == 200, job.text
        uuid = job.json()["data"]["uuid"]
        status = wait_for(
            lambda: http.get(f"/api/invocation/{uuid}").json()["data"], lambda s: s["status"] != "queued" and
            s["status"] != "processing", timeout=120,
        )  # fmt: skip
        assert status["status"] == "completed", status
        fetched = wait_for(
            lambda: http.get("/api/download").json()["data"],
            lambda listed: listed[0]["status"] in ("complete", "error", "canceled"),
            timeout=60,
        )
        assert [d["status"] for d in fetched] == ["complete"], fetched
    finally:
        server.shutdown()

    wanted = (
        "enfugue_queue_depth", "enfugue_invocations_total", "enfugue_queue_seconds_count",
        "enfugue_denoising_steps_total", "enfugue_denoising_steps_per_second", "enfugue_model_loads_total",
        "enfugue_model_load_seconds_count", "enfugue_download_bytes_total",
    )  # fmt: skip

    def scrape() -> str:
        return httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text

    text = wait_for(scrape, lambda text: all(f"ray_{name}" in text for name in wanted), timeout=60)
    assert samples(text, "enfugue_invocations_total")["status=completed"] >= 1
    assert samples(text, "enfugue_denoising_steps_total")["role=base"] >= 6
    assert samples(text, "enfugue_denoising_steps_per_second")["role=base"] > 0
    assert samples(text, "enfugue_model_loads_total")["role=base"] >= 1
    assert samples(text, "enfugue_model_load_seconds_count")["role=base"] >= 1
    assert samples(text, "enfugue_queue_seconds_count")[""] >= 1
    assert samples(text, "enfugue_download_bytes_total")[""] >= len(PAYLOAD)
    assert samples(text, "enfugue_queue_depth")[""] >= 0
