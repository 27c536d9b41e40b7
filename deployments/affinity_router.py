"""Model affinity: the request router of the model roles, run by Serve in the caller (the Planner).

Serve's own router gives a job to a replica holding its model only while that replica is free: the
moment it is busy (a GPU replica takes one job at a time, so nearly always under load), the job goes
to one with the fewest models, which loads the model too. Loads cost seconds to minutes, far more
than waiting for a job to end, so here a job waits for the replicas holding its model for up to
``wait_s`` (longer means they are overloaded), then takes any replica. A job whose model no replica
holds goes to the ones holding the fewest models, so models spread over the replicas.

A replica reports its models once loaded (through the controller: a second or so later); until
then, the router counts a replica it sent a model's job to as holding that model, so the jobs
behind the first wait for it instead of loading the model elsewhere meanwhile.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from ray.serve.request_router import (
    FIFOMixin,
    MultiplexMixin,
    PendingRequest,
    ReplicaID,
    RequestRouter,
    RunningReplica,
)  # fmt: skip

# A job waits this long for a replica holding its model, about the time an SDXL checkpoint takes
# to load on a GPU: waiting longer costs more than loading it elsewhere.
AFFINITY_WAIT_S = 10.0
# How long a replica counts as holding a model it was sent: by then it has reported its models
# (unless its load takes longer, and then it still holds the model's next job up).
ROUTED_MEMORY_S = 60.0


class Replica(Protocol):
    @property
    def replica_id(self) -> Any: ...

    @property
    def multiplexed_model_ids(self) -> set[str]: ...


R = TypeVar("R", bound=Replica)


def rank(
    replicas: Sequence[R], model_id: str, waited_s: float, wait_s: float,
    routed: Mapping[Any, set[str]] | None = None,
) -> list[list[R]]:  # fmt: skip
    """The replicas to try for a job, best first: each list is tried before the next (a busy
    replica refuses). An empty result means: ask again after a short backoff. ``routed``: replica
    id -> the models of the jobs recently sent there (held, or loading)."""
    if not model_id:  # no model to keep together: two at random, the less busy takes it
        return [random.sample(list(replicas), min(2, len(replicas)))] if replicas else []

    def models(replica: R) -> set[str]:
        return set(replica.multiplexed_model_ids) | (routed or {}).get(replica.replica_id, set())

    holders = [replica for replica in replicas if model_id in models(replica)]
    if holders and waited_s < wait_s:
        return [holders]
    others = [replica for replica in replicas if replica not in holders]
    fewest = min((len(models(replica)) for replica in others), default=0)
    emptiest = [replica for replica in others if len(models(replica)) == fewest]
    return [holders, emptiest, [replica for replica in others if replica not in emptiest]]


class ModelAffinityRouter(FIFOMixin, MultiplexMixin, RequestRouter):
    """``request_router_config: {request_router_class: "deployments.affinity_router:ModelAffinityRouter",
    request_router_kwargs: {wait_s: 10}}``: the model roles' default (deployments/role.py)."""

    _wait_s = AFFINITY_WAIT_S

    def initialize_state(self, wait_s: float = AFFINITY_WAIT_S, **kwargs: Any) -> None:
        """Called by Serve with ``request_router_kwargs``."""
        self._wait_s = wait_s
        # (model id, replica) -> time.monotonic() of the latest job of that model sent there.
        self._routed: dict[tuple[str, ReplicaID], float] = {}

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any) -> None:
        model_id = pending_request.metadata.multiplexed_model_id
        if model_id:
            now = time.monotonic()
            for key in [key for key, at in self._routed.items() if now - at > ROUTED_MEMORY_S]:
                del self._routed[key]
            self._routed[(model_id, replica_id)] = now

    def _recently_routed(self) -> dict[ReplicaID, set[str]]:
        now, models = time.monotonic(), defaultdict(set)
        for (model_id, replica_id), at in self._routed.items():
            if now - at <= ROUTED_MEMORY_S:
                models[replica_id].add(model_id)
        return models

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        if pending_request is None:
            return rank(candidate_replicas, "", 0.0, self._wait_s)
        waited = time.time() - pending_request.created_at
        model_id = pending_request.metadata.multiplexed_model_id
        ranked = rank(candidate_replicas, model_id, waited, self._wait_s, self._recently_routed())
        return [replicas for replicas in ranked if replicas]
