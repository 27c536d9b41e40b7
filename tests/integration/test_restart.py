"""The app redeployed on the same data folder with one job running and one queued: history,
statuses and images are intact; both unfinished ones end in error saying the server restarted
(queued invocations do not run after a restart: their requests' images were never stored)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from storage.invocations import RESTART_MESSAGE
from tests.conftest import wait_for
from tests.integration.conftest import small_app_args
from tests.integration.test_serve_http import _finished, _invoke

pytestmark = pytest.mark.integration


def test_a_restart_keeps_history_and_ends_what_was_unfinished(ray_serve: str, tmp_path: Path) -> None:
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
            slow = {"width": 256, "height": 256, "num_inference_steps": 400, "chunking_size": 0}
            running = _invoke(http, **slow)["uuid"]
            queued = _invoke(http, **slow)["uuid"]
            wait_for(lambda: http.get(f"/api/invocation/{running}").json()["data"], lambda s: (s["step"] or 0) >= 1)
            assert http.get(f"/api/invocation/{queued}").json()["data"]["status"] == "queued"

            serve.delete("enfugue")
            serve.run(build_app(small_app_args(paths.root)), name="enfugue", route_prefix="/")

            for uuid in (running, queued):
                status = http.get(f"/api/invocation/{uuid}").json()["data"]
                assert status["status"] == "error" and status["message"] == RESTART_MESSAGE, status
            assert http.get(f"/api/invocation/{done['uuid']}").json()["data"] == done
            again = http.get("/api/invocation/" + done["images"][0])
            assert again.content == image and Image.open(io.BytesIO(again.content)).size == (64, 64)
            history = http.get("/api/invocation-history").json()
            assert history["meta"]["count"] == 3
            assert _finished(http, _invoke(http, width=64, height=64, num_inference_steps=2)["uuid"])["status"] == (
                "completed"
            )
    finally:
        serve.delete("enfugue")
