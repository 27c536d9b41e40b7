"""GET /api on a real local Ray cluster: its nodes and this application's replicas, and no GPU here."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

ROLES = {"base", "inpainter", "refiner", "upscaler", "planner", "store", "ingress", "downloads"}


def test_status_reports_the_nodes_and_the_replicas_per_role(http: httpx.Client) -> None:
    response = http.get("/api")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "idle" and data["version"]

    (node,) = data["nodes"]  # ray.init in tests/integration/conftest.py: one node
    assert node["alive"] is True and node["head"] is True
    assert node["cpus"] == 8 and node["gpus"] == 0
    assert node["id"] and node["address"]

    assert set(data["replicas"]) == ROLES
    for role in ROLES:
        assert data["replicas"][role]["running"] >= 1, (role, data["replicas"])
        assert data["replicas"][role]["status"] == "healthy", (role, data["replicas"])

    # This machine has no GPU: Enfugue's field says so as Enfugue did, with null.
    assert data["gpu"] is None and data["gpus"] == []


def test_the_gpu_query_runs_pinned_to_a_node_and_a_node_without_nvidia_smi_gives_nothing(
    deployed: tuple[str, Path],
) -> None:
    import ray

    from serve_app.cluster import gather, node_gpus, summarise_nodes

    (node,) = summarise_nodes(ray.nodes())
    # Pretend the node declared a GPU, so that the pinned task runs; there is no nvidia-smi here.
    assert node_gpus([{**node, "gpus": 1}], timeout_s=60) == []

    # Outside a replica the view is read from the driver: the only application is ours.
    view = gather()
    assert view["gpu"] is None and view["gpus"] == []
    assert [found["id"] for found in view["nodes"]] == [node["id"]]
    assert set(view["replicas"]) == ROLES
