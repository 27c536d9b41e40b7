"""With ``storage_url`` set, images and model folders live there (memory:// here, as s3:// on a
cluster): the ingress lists models and streams images from it, the Planner writes into it, and
nothing goes to the node's own data folder."""

from __future__ import annotations

import shutil
import uuid as uuids
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.shared import IMAGES, INTERMEDIATES, SharedStorage
from tests.api.test_invocations import SMALL, error_of, finished, invoke
from tests.conftest import serve_locally, wait_for
from tests.fake_role import DEMO_NAME, FakeRole, write_fake_checkpoint


@pytest.fixture
def shared(data_dir: Path, tmp_path: Path) -> Iterator[SharedStorage]:
    """A shared storage holding the demo checkpoint; the data folder keeps none."""
    storage = SharedStorage.from_url(f"memory://api-{uuids.uuid4().hex}")
    checkpoint = write_fake_checkpoint(tmp_path / "upload" / DEMO_NAME)
    storage.fs.put(str(checkpoint), f"{storage.root}/checkpoint/{DEMO_NAME}", recursive=True)
    shutil.rmtree(data_dir / "checkpoint" / DEMO_NAME)
    yield storage
    storage.fs.rm(storage.root, recursive=True)


@pytest.fixture
def client(data_dir: Path, shared: SharedStorage) -> Iterator[Any]:
    url = shared.fs.unstrip_protocol(shared.root)
    with serve_locally(data_dir, role=FakeRole(step_seconds=0.02), storage_url=url) as client:
        yield client


def test_models_are_listed_and_images_served_from_the_shared_storage(
    client: Any, shared: SharedStorage, data_dir: Path
) -> None:
    assert client.get("/api/checkpoints").json()["data"] == [DEMO_NAME]
    uuid = invoke(client, {**SMALL, "prompt": "shared"})["uuid"]  # the only checkpoint: the default
    status = finished(client, uuid)
    assert status["status"] == "completed", status
    name = f"{uuid}_0.png"
    assert status["images"] == [f"images/{name}"]

    response = client.get(f"/api/invocation/images/{name}")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content == shared.read(IMAGES, name)
    assert response.headers["content-length"] == str(len(response.content))
    etag = response.headers["etag"]
    assert etag == f'"{name}"' and "immutable" in response.headers["cache-control"]
    assert client.get(f"/api/invocation/images/{name}", headers={"If-None-Match": etag}).status_code == 304
    assert list((data_dir / "images").iterdir()) == [] and list((data_dir / "intermediates").iterdir()) == []

    shared.remove(IMAGES, name)  # removed behind the server's back: 404, not an error
    assert "not found" in error_of(client.get(f"/api/invocation/images/{name}"), 404)
    assert client.delete(f"/api/invocation/{uuid}").status_code == 200


def test_intermediates_go_through_the_shared_storage_and_are_removed(client: Any, shared: SharedStorage) -> None:
    assert client.post("/api/settings", json={"intermediate_steps": 5}).status_code == 200
    uuid = invoke(client, {**SMALL, "num_inference_steps": 60})["uuid"]
    running = wait_for(
        lambda: client.get(f"/api/invocation/{uuid}").json()["data"],
        lambda status: status["status"] == "processing" and status["images"],
    )
    (path,) = running["images"]
    shown = client.get("/api/invocation/" + path)
    assert shown.status_code == 200 and shown.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert finished(client, uuid)["status"] == "completed"
    assert shared.files(INTERMEDIATES) == []
    assert client.delete(f"/api/invocation/{uuid}").status_code == 200
    assert shared.files(IMAGES) == []


def test_a_missing_model_in_the_shared_storage_is_a_400(client: Any) -> None:
    detail = error_of(client.post("/api/invoke", json={**SMALL, "model": "nothing.safetensors"}), 400)
    assert "no checkpoint file named 'nothing.safetensors'" in detail
