"""Two nodes: a second node joins the session's cluster with `ray start --address` and a custom
resource; the Base role pinned to that resource runs there, reading its model from the shared
storage (a file:// URL, apart from the data folder), and its images come back through the ingress
on the head, from that storage."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from serve_app.config import RoleOptions
from tests.conftest import wait_for
from tests.integration.conftest import small_app_args

pytestmark = pytest.mark.integration

RESOURCE = "enfugue_second_node"


@pytest.fixture(scope="module")
def second_node(ray_serve: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The node id of a second raylet on this machine, offering one RESOURCE."""
    import ray

    ray_cli = str(Path(sys.executable).with_name("ray"))
    command = [ray_cli, "start", "--address", ray.get_runtime_context().gcs_address, "--num-cpus", "2"]
    command += ["--resources", json.dumps({RESOURCE: 1}), "--block", "--disable-usage-stats"]
    log = tmp_path_factory.mktemp("second-node") / "ray-start.log"
    with log.open("w") as output:
        node = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        joined = wait_for(
            lambda: [n for n in ray.nodes() if n["Alive"] and RESOURCE in n["Resources"]],
            lambda nodes: bool(nodes) or node.poll() is not None, timeout=120,
        )  # fmt: skip
        assert joined, log.read_text()
        yield joined[0]["NodeID"]
    finally:
        node.terminate()  # `ray start --block` stops its node's processes as it exits
        node.wait(timeout=60)


@pytest.fixture(scope="module")
def pinned(
    ray_serve: str, second_node: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, Path]]:
    """The app with Base pinned to the second node's resource; yields its URL, data folder and storage."""
    from ray import serve

    from deployments.demo import write_demo_checkpoint
    from serve_app.app import build_app
    from storage.files import DataPaths

    data, shared = DataPaths(tmp_path_factory.mktemp("data")), DataPaths(tmp_path_factory.mktemp("shared")).ensure()
    write_demo_checkpoint(shared.models("checkpoint"))
    base = RoleOptions(num_cpus=1, resources={RESOURCE: 1})
    args = small_app_args(data.root).model_copy(update={"base": base, "storage_url": shared.root.as_uri()})
    serve.run(build_app(args), name="enfugue", route_prefix="/")
    try:
        yield ray_serve, data.root, shared.root
    finally:
        serve.delete("enfugue")


def replica_nodes(deployment: str) -> set[str]:
    """The nodes the live replicas of ``deployment`` run on (from the GCS actor table)."""
    from ray._private import state

    return {
        actor["Address"]["NodeID"]
        for actor in state.actors().values()
        if actor["ActorClassName"] == f"ServeReplica:enfugue:{deployment}" and actor["State"] == "ALIVE"
    }


def test_a_pinned_role_runs_on_its_node_and_its_images_reach_the_ingress(
    pinned: tuple[str, Path, Path], second_node: str
) -> None:
    url, data_dir, shared = pinned
    import ray

    assert replica_nodes("Base") == {second_node}
    head = ray.get_runtime_context().get_node_id()
    assert head != second_node and replica_nodes("Ingress") <= {head, second_node}

    with httpx.Client(base_url=url, timeout=60) as http:
        job = http.post("/api/invoke", json={"prompt": "far away", "width": 64, "height": 64, "num_inference_steps": 3})
        assert job.status_code == 200, job.text
        uuid = job.json()["data"]["uuid"]
        status = wait_for(
            lambda: http.get(f"/api/invocation/{uuid}").json()["data"],
            lambda s: s["status"] not in ("queued", "processing"), timeout=120,
        )  # fmt: skip
        assert status["status"] == "completed", status
        png = http.get("/api/invocation/" + status["images"][0])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content == (shared / status["images"][0]).read_bytes()
    assert not list((data_dir / "images").glob("*.png"))
    image = Image.open(io.BytesIO(png.content))
    assert image.size == (64, 64) and len(image.getcolors(64 * 64)) > 1  # a diffused image, not a blank
