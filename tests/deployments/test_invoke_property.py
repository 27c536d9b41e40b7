"""Every admitted invocation completes: random coherent bodies (tests/invoke_payloads.py) through the
API in-process on the real roles and tiny models. Each is refused at admission with a 4xx naming a
request field, or ends ``completed`` with the promised number and size of images.

INVOKE_PAYLOADS bodies (30 here); ``make fuzz-invoke`` runs 500. A failing body is shrunk to the
smallest one that still fails, and the message shows it with its seed.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from deployments.image_steps import BACKGROUND_FILE, UPSCALE_FILES
from serve_app.schemas import InvokeRequest
from storage.files import DataPaths
from tests.conftest import wait_for
from tests.invoke_payloads import CONTROLNET_FILES, payload, promised, smaller

COUNT = int(os.environ.get("INVOKE_PAYLOADS", "30"))
# Where the bodies start: another offset runs other bodies.
FIRST = int(os.environ.get("INVOKE_PAYLOADS_FROM", "0"))
# Shrinking stops after this many runs: it shows a smaller body, not always the smallest.
SHRINK_RUNS = 40
OUTCOMES: Counter[str] = Counter()
# A detail starts with the field it names: "strength:", "nodes.1.w:", "upscale_diffusion_steps[0]:".
FIELD = re.compile(r"^([a-z_]+)(\[\d+\]|\.\d+)?(\.[a-z_]+)?:")
# A body of these sizes takes seconds; one still running after this is stuck (not shrunk: too slow).
TIMEOUT_S = 180


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Any]:
    from deployments.base import BaseRole
    from deployments.demo import write_demo_checkpoint
    from deployments.upscaler import UpscalerRole
    from tests.conftest import serve_locally
    from tests.tiny_filters import write_tiny_segmenter
    from tests.tiny_models import tiny_controlnet, write_tiny_controlnet
    from tests.tiny_upscalers import write_tiny_esrgan

    paths = DataPaths(tmp_path_factory.mktemp("property")).ensure()
    write_demo_checkpoint(paths.models("checkpoint"))
    write_tiny_esrgan(paths.models("upscaler"), UPSCALE_FILES["esrgan"], scale=4)
    write_tiny_esrgan(paths.models("upscaler"), UPSCALE_FILES["esrganime"], scale=4, seed=1)
    write_tiny_segmenter(paths.models("background") / BACKGROUND_FILE)
    controlnet = tiny_controlnet()
    for name in CONTROLNET_FILES:
        write_tiny_controlnet(paths.models("controlnet") / name, controlnet)
    roles = {"base": BaseRole(str(paths.root)), "upscaler": UpscalerRole(str(paths.root))}
    with serve_locally(paths.root, roles=roles) as client:
        yield client
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if reporter is not None and capture is not None:
        counts = ", ".join(f"{outcome}: {count}" for outcome, count in OUTCOMES.most_common())
        with capture.global_and_fixture_disabled():  # the counts are the long run's report
            reporter.write_line(f"\ninvoke property: {sum(OUTCOMES.values())} bodies; {counts}")


def outcome(client: Any, body: dict[str, Any]) -> tuple[str, str | None]:
    """("completed" | "refused <field>", None), or ("failed" | "stuck", why) when the body broke the promise."""
    response = client.post("/api/invoke", json=body)
    if 400 <= response.status_code < 500:
        detail = response.json()["errors"][0]["detail"]
        named = FIELD.match(detail)
        if named is None or named[1] not in InvokeRequest.model_fields:
            return "failed", f"refused with {response.status_code} without naming a field: {detail}"
        return f"refused {named[1]}", None
    if response.status_code != 200:
        return "failed", f"answered {response.status_code}: {response.text[:500]}"
    uuid = response.json()["data"]["uuid"]
    try:
        status = wait_for(
            lambda: client.get(f"/api/invocation/{uuid}").json()["data"],
            lambda s: s["status"] not in ("queued", "processing"),
            timeout=TIMEOUT_S,
        )
    except AssertionError as error:
        client.post(f"/api/invocation/{uuid}/cancel")  # the next body gets the roles to itself
        return "stuck", str(error)
    if status["status"] != "completed":
        return "failed", f"admitted, then ended {status['status']}: {status['message']}"
    count, size = promised(body)
    images = [Image.open(io.BytesIO(client.get(f"/api/invocation/{name}").content)) for name in status["images"]]
    sizes = [image.size for image in images]
    if sizes != [size] * count:
        return "failed", f"completed with images of {sizes}, promised {count} of {size}"
    return "completed", None


def shrunk(client: Any, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The smallest body found, one change at a time, that still fails; and how it fails."""
    runs, why = 0, outcome(client, body)[1] or ""
    progress = True
    while progress and runs < SHRINK_RUNS:
        progress = False
        for candidate in smaller(body):
            runs += 1
            result, reason = outcome(client, candidate)
            if result == "failed":
                body, why, progress = candidate, reason or "", True
                break
            if runs >= SHRINK_RUNS:
                break
    return body, why


def _shown(body: dict[str, Any]) -> str:
    """The body with its images abbreviated."""
    text = json.dumps(body)
    return re.sub(r'"data:image/[^"]{40,}"', '"data:image/..."', text)


@pytest.mark.parametrize("seed", range(FIRST, FIRST + COUNT))
def test_an_admitted_invocation_completes(client: Any, seed: int) -> None:
    body = payload(seed)
    result, why = outcome(client, body)
    OUTCOMES[result] += 1
    if result == "stuck":
        pytest.fail(f"body {seed} {why}\n{_shown(body)}")
    if result == "failed":
        smallest, reason = shrunk(client, body)
        pytest.fail(f"body {seed} {why}\nsmallest failing body: {_shown(smallest)}\n  {reason}")
