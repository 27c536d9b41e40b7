"""The Ray cluster as ``GET /api`` reports it: every GPU, the nodes, and the replicas per role.

Ray's calls block, so they run in a thread; the answer is kept a few seconds, because Enfugue's UI
polls ``GET /api`` every few seconds and each refresh runs one short task per GPU node. Without
Ray (the API test tier runs the app in-process) the view is empty. A failure empties a part of the
view and logs why; it never fails the reply.
"""

from __future__ import annotations

import asyncio
import logging
import math
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import ray
from ray import serve
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

logger = logging.getLogger(__name__)

NVIDIA_SMI = (
    "nvidia-smi",
    "--query-gpu=index,name,driver_version,utilization.gpu,temperature.gpu,memory.used,memory.total",
    "--format=csv,noheader,nounits",
)
CACHE_S = 5.0
# A GPU node may have no idle worker: the task's worker start counts against this too.
GPU_QUERY_TIMEOUT_S = 10.0
_SMI_TIMEOUT_S = 5.0
# The first GET /api has no earlier answer to fall back on; it waits this long for one.
FIRST_WAIT_S = 15.0
# Ray marks the head node with this resource.
_HEAD_RESOURCE = "node:__internal_head__"
_NO_NVIDIA_SMI = "no nvidia-smi"


def empty_view() -> dict[str, Any]:
    return {"gpu": None, "gpus": [], "nodes": [], "replicas": {}}


# ---- pure: parsing and summarising -------------------------------------------------------------


def _number(text: str) -> float | None:
    """nvidia-smi writes ``[N/A]`` or ``[Not Supported]`` where a GPU cannot tell."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)


def parse_nvidia_smi(output: str) -> list[dict[str, Any]]:
    """One dict per GPU in Enfugue's ``gpu`` shape (load and memory.util as fractions, memory in
    MiB), plus its ``index``; unreadable lines are skipped."""
    gpus = []
    for line in output.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 7:
            continue
        # Split from both ends: only the name could ever hold a comma.
        index, name, (driver, load, temp, used, total) = fields[0], ", ".join(fields[1:-5]), fields[-5:]
        position = _number(index)
        if position is None or not name:
            continue
        used_mib, total_mib, load_percent = _whole(_number(used)), _whole(_number(total)), _number(load)
        gpus.append(
            {
                "index": int(position),
                "driver": driver,
                "name": name,
                "load": None if load_percent is None else load_percent / 100,
                "temp": _whole(_number(temp)),
                "memory": {
                    "free": None if used_mib is None or total_mib is None else total_mib - used_mib,
                    "total": total_mib,
                    "used": used_mib,
                    "util": used_mib / total_mib if used_mib is not None and total_mib else None,
                },
            }
        )
    return gpus


def enfugue_gpu(gpu: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The seed's ``gpu`` object exactly: its keys, none of ours."""
    if gpu is None:
        return None
    return {key: gpu[key] for key in ("driver", "name", "load", "temp", "memory")}


def _count(value: Any) -> int | float:
    number = float(value or 0)
    return int(number) if number.is_integer() else number


def summarise_nodes(raw: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``ray.nodes()`` as we report it: the head first, then by address."""
    nodes = []
    for node in raw:
        resources = node.get("Resources") or {}
        nodes.append(
            {
                "id": node.get("NodeID"),
                "address": node.get("NodeManagerAddress"),
                "hostname": node.get("NodeManagerHostname"),
                "alive": bool(node.get("Alive")),
                "head": _HEAD_RESOURCE in resources,
                "cpus": _count(resources.get("CPU")),
                "gpus": _count(resources.get("GPU")),
            }
        )
    return sorted(nodes, key=lambda node: (not node["head"], str(node["address"]), str(node["id"])))


def _lower(value: Any) -> str:
    # Ray's status enums are str enums; a plain string passes through.
    return str(getattr(value, "value", value)).lower()


def summarise_replicas(deployments: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per role (the deployment's name, lower case): its status and its replicas counted by state;
    ``running`` is always there."""
    roles = {}
    for name, deployment in sorted(deployments.items()):
        counts = {_lower(state): count for state, count in (deployment.replica_states or {}).items()}
        roles[name.lower()] = {"status": _lower(deployment.status), "running": 0, **counts}
    return roles


def pick_application(applications: Mapping[str, Any], app_name: str | None) -> Mapping[str, Any]:
    """Our application's deployments: by name inside a replica, else the only application there is."""
    if app_name is not None:
        application = applications.get(app_name)
    elif len(applications) == 1:
        (application,) = applications.values()
    else:
        logger.debug("not in a replica and %d Serve applications: no replicas reported", len(applications))
        application = None
    return {} if application is None else application.deployments


# ---- Ray: the blocking queries -----------------------------------------------------------------


def _run_nvidia_smi() -> tuple[str | None, str | None]:
    """On the node the task is pinned to: (nvidia-smi's output, None) or (None, why not).

    nvidia-smi reads NVML, which ignores CUDA_VISIBLE_DEVICES: a task holding no GPU sees them all."""
    try:
        done = subprocess.run(NVIDIA_SMI, capture_output=True, text=True, timeout=_SMI_TIMEOUT_S, check=False)
    except FileNotFoundError:
        return None, _NO_NVIDIA_SMI
    except (OSError, subprocess.SubprocessError) as error:
        return None, f"nvidia-smi failed: {error}"
    if done.returncode != 0:
        return None, f"nvidia-smi exited {done.returncode}: {done.stderr.strip()[:200]}"
    return done.stdout, None


# No CPU reserved: the query must run on a node whose CPUs are all taken by replicas; no retries:
# the next refresh is the retry.
_nvidia_smi_task = ray.remote(num_cpus=0, max_retries=0)(_run_nvidia_smi)


def node_gpus(nodes: Sequence[Mapping[str, Any]], timeout_s: float = GPU_QUERY_TIMEOUT_S) -> list[dict[str, Any]]:
    """Every GPU of the alive nodes that declare GPUs, each with its ``node``; one task per node."""
    asked = {}
    for node in nodes:
        if node["alive"] and node["gpus"]:
            strategy = NodeAffinitySchedulingStrategy(node_id=node["id"], soft=False)
            asked[_nvidia_smi_task.options(scheduling_strategy=strategy).remote()] = node["id"]
    if not asked:
        return []
    ready, late = ray.wait(list(asked), num_returns=len(asked), timeout=timeout_s)
    for ref in late:
        logger.warning("node %s: nvidia-smi gave no answer within %s s", asked[ref], timeout_s)
        try:
            ray.cancel(ref)
        except Exception:  # already finished, or its node is gone: nothing left to stop
            logger.debug("could not cancel the nvidia-smi task on node %s", asked[ref], exc_info=True)
    gpus = []
    for ref in ready:
        node_id = asked[ref]
        try:
            output, problem = ray.get(ref)
        except Exception as error:  # the task died, or its node did: that node has nothing to say
            logger.warning("node %s: the nvidia-smi task failed: %s", node_id, error)
            continue
        if output is None:
            # A node without NVIDIA GPUs is no fault; one whose nvidia-smi fails is worth a look.
            log = logger.debug if problem == _NO_NVIDIA_SMI else logger.warning
            log("node %s: %s", node_id, problem)
            continue
        gpus.extend({**gpu, "node": node_id} for gpu in parse_nvidia_smi(output))
    order = {node["id"]: position for position, node in enumerate(nodes)}
    return sorted(gpus, key=lambda gpu: (order.get(gpu["node"], len(order)), gpu["index"]))


def _app_name() -> str | None:
    try:
        return serve.get_replica_context().app_name
    except Exception:  # RayServeException: not inside a replica
        return None


def gather() -> dict[str, Any]:
    """The whole view, now; blocking. Each part that Ray cannot give is empty."""
    view = empty_view()
    try:
        view["nodes"] = summarise_nodes(ray.nodes())
    except Exception:
        logger.warning("could not list the Ray nodes", exc_info=True)
    try:
        view["gpus"] = node_gpus(view["nodes"])
    except Exception:
        logger.warning("could not query the GPUs", exc_info=True)
    view["gpu"] = enfugue_gpu(view["gpus"][0] if view["gpus"] else None)
    try:
        view["replicas"] = summarise_replicas(pick_application(serve.status().applications, _app_name()))
    except Exception:
        logger.warning("could not read the Serve status", exc_info=True)
    return view


# ---- the cache ---------------------------------------------------------------------------------


class ClusterView:
    """The latest view, refreshed in the background once older than ``ttl_s``.

    A stale view is answered at once while the refresh runs (a poller sees a change one poll later,
    and never waits on Ray); only the first call waits, at most ``first_wait_s``. One refresh at a
    time, however many callers. Belongs to one event loop (the app's)."""

    def __init__(
        self,
        gather: Callable[[], dict[str, Any]] = gather,
        connected: Callable[[], bool] = ray.is_initialized,
        ttl_s: float = CACHE_S,
        first_wait_s: float = FIRST_WAIT_S,
    ) -> None:
        self._gather, self._connected = gather, connected
        self._ttl_s, self._first_wait_s = ttl_s, first_wait_s
        self._view: dict[str, Any] | None = None
        self._at = -math.inf
        self._refresh: asyncio.Task[None] | None = None

    async def snapshot(self) -> dict[str, Any]:
        if not self._connected():
            return empty_view()
        refresh = self._refresh
        if (refresh is None or refresh.done()) and time.monotonic() - self._at >= self._ttl_s:
            refresh = self._refresh = asyncio.get_running_loop().create_task(self._update())
        if self._view is None and refresh is not None and not refresh.done():
            try:
                await asyncio.wait_for(asyncio.shield(refresh), self._first_wait_s)
            except TimeoutError:
                logger.warning("the cluster view took over %s s; answering without it", self._first_wait_s)
        return self._view if self._view is not None else empty_view()

    async def _update(self) -> None:
        try:
            self._view = await asyncio.to_thread(self._gather)
        except Exception:  # gather catches Ray's errors; this is for anything it did not foresee
            logger.exception("could not refresh the cluster view")
        # A failure waits out the TTL too, so that a broken cluster is not asked on every poll.
        self._at = time.monotonic()
