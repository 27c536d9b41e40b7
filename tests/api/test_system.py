"""GET /api answers the seed's shape; without Ray the cluster view beside it is empty."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_status_answers_the_seed_shape_with_an_empty_cluster_view(local_app: TestClient) -> None:
    response = local_app.get("/api")
    assert response.status_code == 200
    body = response.json()
    assert body["meta"] == {"params": {}}
    data = body["data"]
    assert set(data) == {"status", "system", "gpu", "version", "uptime", "warnings", "gpus", "nodes", "replicas"}
    assert data["status"] == "idle"
    assert data["system"] == {
        "downloads": {"active": 0, "queued": 0, "total": 0},
        "invocations": {"active": False, "queued": 0, "total": 0},
    }
    assert data["version"] == "test" and data["uptime"] >= 0
    # The app runs in-process here, without Ray: no GPU to report, no nodes, no replicas.
    assert data["gpu"] is None
    assert (data["gpus"], data["nodes"], data["replicas"]) == ([], [], {})
