"""The cluster view of GET /api without a cluster: parsing nvidia-smi, summarising Ray's answers, the cache."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from ray.serve._private.common import DeploymentStatus, DeploymentStatusTrigger, ReplicaState
from ray.serve.schema import ApplicationStatusOverview, DeploymentStatusOverview

from serve_app.cluster import (
    ClusterView,
    empty_view,
    enfugue_gpu,
    parse_nvidia_smi,
    pick_application,
    summarise_nodes,
    summarise_replicas,
)

# What the query prints on a two-GPU machine; the second GPU cannot read its load or temperature.
TWO_GPUS = """\
0, NVIDIA GeForce RTX 3090 Ti, 536.99, 43, 56, 1550, 24564
1, NVIDIA H200, 550.54.15, [N/A], [Not Supported], 0, 143771
"""


def test_a_gpu_line_reads_as_enfugues_gpu_object() -> None:
    first, second = parse_nvidia_smi(TWO_GPUS)
    assert first == {
        "index": 0,
        "driver": "536.99",
        "name": "NVIDIA GeForce RTX 3090 Ti",
        "load": 0.43,
        "temp": 56,
        "memory": {"free": 23014, "total": 24564, "used": 1550, "util": pytest.approx(0.06310047223579221)},
    }
    assert second == {
        "index": 1,
        "driver": "550.54.15",
        "name": "NVIDIA H200",
        "load": None,
        "temp": None,
        "memory": {"free": 143771, "total": 143771, "used": 0, "util": 0.0},
    }


def test_unknown_memory_leaves_the_derived_figures_unknown() -> None:
    (gpu,) = parse_nvidia_smi("0, Tesla T4, 470.82.01, 7, 40, [N/A], 0\n")
    assert gpu["load"] == 0.07 and gpu["temp"] == 40
    assert gpu["memory"] == {"free": None, "total": 0, "used": None, "util": None}


def test_a_comma_in_the_name_is_kept_and_broken_lines_are_skipped() -> None:
    output = "\n".join(
        [
            "0, Some GPU, rev 2, 510.1, 5, 30, 100, 1000",
            "",
            "No devices were found",
            "x, Nameless index, 510.1, 5, 30, 100, 1000",
            "1, , 510.1, 5, 30, 100, 1000",
            "  2 ,  Padded GPU  , 510.1 , 5 , 30 , 100 , 1000  ",
        ]
    )
    assert [(gpu["index"], gpu["name"], gpu["driver"]) for gpu in parse_nvidia_smi(output)] == [
        (0, "Some GPU, rev 2", "510.1"),
        (2, "Padded GPU", "510.1"),
    ]
    assert parse_nvidia_smi("") == []


def test_the_seed_field_keeps_the_seed_keys_only() -> None:
    gpu = {**parse_nvidia_smi(TWO_GPUS)[0], "node": "n1"}
    assert list(enfugue_gpu(gpu) or {}) == ["driver", "name", "load", "temp", "memory"]
    assert enfugue_gpu(None) is None


def _node(node_id: str, address: str, head: bool = False, alive: bool = True, **resources: float) -> dict[str, Any]:
    extra = {"node:__internal_head__": 1.0} if head else {}
    return {
        "NodeID": node_id,
        "Alive": alive,
        "NodeManagerAddress": address,
        "NodeManagerHostname": f"host-{node_id}",
        "Resources": {**extra, **resources, "memory": 1e9, f"node:{address}": 1.0},
    }


def test_nodes_are_summarised_head_first() -> None:
    raw = [
        _node("b", "10.0.0.3", CPU=16.0, GPU=8.0),
        _node("gone", "10.0.0.9", alive=False),
        _node("a", "10.0.0.2", head=True, CPU=4.0),
        _node("c", "10.0.0.4", CPU=0.5, GPU=1.0),
    ]
    assert summarise_nodes(raw) == [
        {"id": "a", "address": "10.0.0.2", "hostname": "host-a", "alive": True, "head": True, "cpus": 4, "gpus": 0},
        {"id": "b", "address": "10.0.0.3", "hostname": "host-b", "alive": True, "head": False, "cpus": 16, "gpus": 8},
        {"id": "c", "address": "10.0.0.4", "hostname": "host-c", "alive": True, "head": False, "cpus": 0.5, "gpus": 1},
        {
            "id": "gone",
            "address": "10.0.0.9",
            "hostname": "host-gone",
            "alive": False,
            "head": False,
            "cpus": 0,
            "gpus": 0,
        },
    ]


def _deployment(status: DeploymentStatus, **states: int) -> DeploymentStatusOverview:
    return DeploymentStatusOverview(
        status=status,
        status_trigger=DeploymentStatusTrigger.CONFIG_UPDATE_STARTED,
        replica_states={ReplicaState(state.upper()): count for state, count in states.items()},
        message="",
    )


def test_replicas_are_counted_per_role_by_state() -> None:
    deployments = {
        "Base": _deployment(DeploymentStatus.UPSCALING, running=2, starting=1),
        "Store": _deployment(DeploymentStatus.HEALTHY, running=1),
        "Refiner": _deployment(DeploymentStatus.UPDATING),
    }
    assert summarise_replicas(deployments) == {
        "base": {"status": "upscaling", "running": 2, "starting": 1},
        "refiner": {"status": "updating", "running": 0},
        "store": {"status": "healthy", "running": 1},
    }


def test_our_application_is_picked_by_name_or_as_the_only_one() -> None:
    ours = ApplicationStatusOverview(
        status="RUNNING", message="", last_deployed_time_s=0.0, deployments={"Base": _deployment("HEALTHY")}
    )
    other = ApplicationStatusOverview(status="RUNNING", message="", last_deployed_time_s=0.0, deployments={})
    assert pick_application({"enfugue": ours, "other": other}, "enfugue") is ours.deployments
    assert pick_application({"enfugue": ours}, None) is ours.deployments
    assert pick_application({"enfugue": ours, "other": other}, None) == {}
    assert pick_application({"other": other}, "enfugue") == {}
    assert pick_application({}, None) == {}


class _Gatherer:
    """A ``gather`` that counts its calls and, when told, holds the refresh until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()
        self.release.set()

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        self.release.wait(timeout=10)
        return {**empty_view(), "nodes": [{"id": f"call-{self.calls}"}]}


def test_without_ray_the_view_is_empty_and_nothing_is_asked() -> None:
    gatherer = _Gatherer()
    view = ClusterView(gather=gatherer, connected=lambda: False)
    assert asyncio.run(view.snapshot()) == {"gpu": None, "gpus": [], "nodes": [], "replicas": {}}
    assert gatherer.calls == 0


def test_the_view_is_cached_then_refreshed_in_the_background() -> None:
    gatherer = _Gatherer()
    view = ClusterView(gather=gatherer, connected=lambda: True, ttl_s=0.2)

    async def scenario() -> None:
        # The first callers wait for the first answer, together: one gather.
        first = await asyncio.gather(view.snapshot(), view.snapshot(), view.snapshot())
        assert [answer["nodes"] for answer in first] == [[{"id": "call-1"}]] * 3
        assert (await view.snapshot())["nodes"] == [{"id": "call-1"}] and gatherer.calls == 1

        await asyncio.sleep(0.3)
        gatherer.release.clear()
        # Stale: answered at once from the cache while one refresh runs.
        stale = await asyncio.gather(view.snapshot(), view.snapshot())
        assert [answer["nodes"] for answer in stale] == [[{"id": "call-1"}]] * 2
        gatherer.release.set()
        await asyncio.sleep(0.1)
        assert (await view.snapshot())["nodes"] == [{"id": "call-2"}] and gatherer.calls == 2

    asyncio.run(scenario())


def test_a_first_answer_that_takes_too_long_gives_the_empty_view() -> None:
    gatherer = _Gatherer()
    gatherer.release.clear()
    view = ClusterView(gather=gatherer, connected=lambda: True, first_wait_s=0.05)

    async def scenario() -> None:
        assert await view.snapshot() == empty_view()
        gatherer.release.set()
        await asyncio.sleep(0.1)
        assert (await view.snapshot())["nodes"] == [{"id": "call-1"}] and gatherer.calls == 1

    asyncio.run(scenario())


def test_a_failing_gather_gives_the_empty_view() -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("the GCS is gone")

    view = ClusterView(gather=broken, connected=lambda: True)
    assert asyncio.run(view.snapshot()) == empty_view()
