"""Model affinity: the request router of the model roles, run by Serve in the caller (the Planner).

Serve's own router gives a job to a replica holding its model only while that replica is free: the
moment it is busy (a GPU replica runs one job at a time, so nearly always under load), the job goes
to one with the fewest models, which loads the model too. A load costs seconds to minutes, more than
waiting for a job or two to end, so here a job waits for the replicas holding its model while they
are not overloaded: fewer than ``spill_depth`` jobs of that model wait per holder, and this job has
waited less than ``wait_s``; when every holder is full, a replica holding no model at all takes it
(it idles otherwise). Past that it takes any free replica, the ones holding the fewest models first. A job
whose model no replica holds goes to those too, so models spread over the replicas.

A replica reports its models once loaded (through the controller: a second or so later); until
then, the router counts a replica it sent a model's job to as holding that model, so the jobs
behind the first wait for it instead of loading the model elsewhere meanwhile.

When a job ends, its replica goes at once to the next job waiting for the same model (Serve
would find it free only at that job's next retry, up to the backoff later, on every hand-over).

Which job a free replica takes, of those waiting for its model, is fair (deployments/turns.py):
round-robin between users, oldest first within one (Serve's: the oldest). Jobs of other models
wait for replicas ranked as above, so between users of different models the order is as fair as
the replicas that hold their models are free. A freed replica is found free by several callers at
once (the job's end, and each routing task's probe or cached queue length); each would hand it to
the fairest job still waiting, a different one each time, and the replica takes whichever arrives
first. So a replica handed to a job goes to no other until the replica has answered that job.
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

from deployments.turns import Rotation, Turn

# A job waits at most this long for a replica holding its model, about the time an SDXL checkpoint
# takes to load on a GPU: waiting longer costs more than loading it elsewhere.
AFFINITY_WAIT_S = 10.0
# Jobs of one model that may wait per replica holding it before others load it too.
SPILL_DEPTH = 2
# How long a replica counts as holding a model it was sent: by then it has reported its models
# (unless its load takes longer, and then it still holds the model's next job up).
ROUTED_MEMORY_S = 60.0
# How long a replica handed to a job waits for the job to reach it before others may have it: the
# answer comes in milliseconds; a job cancelled between being handed the replica and being sent
# never answers, and its replica idles this long.
HAND_OVER_S = 5.0
# A job longer than this is forgotten: when it ends, its replica is found free at the next retry.
RUNNING_MEMORY_S = 3600.0


class Replica(Protocol):
    @property
    def replica_id(self) -> Any: ...

    @property
    def multiplexed_model_ids(self) -> set[str]: ...


R = TypeVar("R", bound=Replica)


def held(replica: Replica, routed: Mapping[Any, set[str]] | None) -> set[str]:
    """The models ``replica`` holds: those it reports, and those of the jobs recently sent there
    (``routed``: replica id -> models), which it holds or is loading."""
    return set(replica.multiplexed_model_ids) | (routed or {}).get(replica.replica_id, set())


def rank(
    replicas: Sequence[R], model_id: str, *, waited_s: float = 0.0, waiting: int = 1,
    wait_s: float = AFFINITY_WAIT_S, spill_depth: int = SPILL_DEPTH, routed: Mapping[Any, set[str]] | None = None,
) -> list[list[R]]:  # fmt: skip
    """The replicas to try for a job, best first: each list is tried before the next (a busy
    replica refuses; when all do, the router asks again after a short backoff).

    ``waited_s``: how long this job has waited; ``waiting``: jobs of ``model_id`` waiting, this
    one included; ``routed``: replica id -> the models of the jobs recently sent there."""
    if not model_id:  # no model to keep together: two at random, the less busy takes it
        return [random.sample(list(replicas), min(2, len(replicas)))] if replicas else []

    holders = [replica for replica in replicas if model_id in held(replica, routed)]
    if holders and waited_s < wait_s and waiting <= spill_depth * len(holders):
        # A replica that holds no model (new, or never used) is idle capacity: when every holder
        # is full, it takes the job (loading the model there evicts nothing) rather than let it wait.
        idle = [replica for replica in replicas if not held(replica, routed)]
        return [holders, idle] if idle else [holders]
    others = [replica for replica in replicas if replica not in holders]
    fewest = min((len(held(replica, routed)) for replica in others), default=0)
    emptiest = [replica for replica in others if len(held(replica, routed)) == fewest]
    ranked = [holders, emptiest, [replica for replica in others if replica not in emptiest]]
    return [replicas for replicas in ranked if replicas]


class ModelAffinityRouter(FIFOMixin, MultiplexMixin, RequestRouter):
    """The model roles' default (deployments/role.py); ``request_router_kwargs`` may set
    ``wait_s`` and ``spill_depth``."""

    def initialize_state(self, wait_s: float = AFFINITY_WAIT_S, spill_depth: int = SPILL_DEPTH, **_: Any) -> None:
        """Called by Serve with ``request_router_kwargs``."""
        self._wait_s, self._spill_depth = wait_s, spill_depth
        # (model id, replica) -> time.monotonic() of the latest job of that model sent there.
        self._routed: dict[tuple[str, ReplicaID], float] = {}
        # model id -> its jobs not routed yet, by request id.
        self._waiting: dict[str, dict[str, PendingRequest]] = defaultdict(dict)
        # Jobs running, by request id: their metadata (which names their model) and since when.
        self._running: dict[str, tuple[Any, float]] = {}
        self._rotation = Rotation()
        # Replica id -> the request it was handed to, and until when it waits for its answer.
        self._handed: dict[ReplicaID, tuple[str, float]] = {}

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        model_id = pending_request.metadata.multiplexed_model_id if pending_request else ""
        if pending_request is not None:
            # Serve's routing task asks again after a backoff only when this is set (its own
            # ranking mixins set it); unset, each waiting job probes the busy replicas nonstop.
            pending_request.routing_context.should_backoff = True
        if pending_request is None or not model_id:
            return rank(candidate_replicas, "")
        routed = self._recently_routed()
        ranked = rank(
            candidate_replicas, model_id, waited_s=time.time() - pending_request.created_at,
            waiting=self._count_waiting(model_id, pending_request), wait_s=self._wait_s,
            spill_depth=self._spill_depth, routed=routed,
        )  # fmt: skip
        best = ranked[0] if ranked else []
        if best and not any(model_id in held(replica, routed) for replica in best):
            ranked = self._place(model_id, ranked)
        return ranked

    def _place(self, model_id: str, ranked: list[list[RunningReplica]]) -> list[list[RunningReplica]]:
        """A model going to a replica that does not hold it: one replica of the best group, counted
        as holding it from now on. Jobs routed meanwhile (the replica's answer is a round trip away)
        then see it taken, and a replica that takes two jobs does not get two new models at once."""
        chosen = random.choice(ranked[0])
        self._routed[(model_id, chosen.replica_id)] = time.monotonic()
        return [[chosen], *ranked]

    def _fulfill_next_pending_request(self, replica: RunningReplica, request_metadata: Any = None) -> None:
        """Called by Serve with a replica that can take a job of ``request_metadata``'s model: the
        fairest job waiting for that model takes it (Serve's mixin gives it to the oldest)."""
        model_id = request_metadata.multiplexed_model_id if request_metadata is not None else ""
        if not model_id:
            super()._fulfill_next_pending_request(replica, request_metadata)
            return
        handed = self._handed.get(replica.replica_id)
        if handed is not None and handed[1] > time.monotonic():
            return  # found free again before it answered the job it was handed to
        waiting = self._pending_requests_by_model_id.get(model_id, ())
        chosen = self._rotation.fairest((request for request in waiting if not request.future.done()), turn_of)
        if chosen is not None:  # as Serve's mixin fulfils the one it picks
            self._handed[replica.replica_id] = (chosen.metadata.internal_request_id, time.monotonic() + HAND_OVER_S)
            self._cancel_routing_task_for_pending_request(chosen)
            self._record_queue_wait_time(chosen)
            chosen.future.set_result(replica)
            self._remove_pending_request_from_indices(chosen)

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any) -> None:
        self._answered(replica_id, pending_request.metadata.internal_request_id)
        self._rotation.taken(turn_of(pending_request))
        model_id = pending_request.metadata.multiplexed_model_id
        if model_id:
            now = time.monotonic()
            self._forget_old(now)
            self._routed[(model_id, replica_id)] = now
            self._waiting[model_id].pop(pending_request.metadata.internal_request_id, None)
            self._running[pending_request.metadata.internal_request_id] = (pending_request.metadata, now)

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        """Hand the freed replica to the next job waiting for the model it just ran. (Serve calls
        this for a job the replica refused too: it waits again.)"""
        self._answered(replica_id, internal_request_id)
        metadata, _ = self._running.pop(internal_request_id, (None, None))
        replica = self.curr_replicas.get(replica_id)
        if metadata is None or replica is None:
            return
        if self._get_pending_request_matching_metadata(metadata) is not None:
            # Sent with Serve's rejection protocol: should the replica still count the ended
            # job, it refuses, and the job is routed again as usual.
            self._fulfill_next_pending_request(replica, metadata)

    def _answered(self, replica_id: ReplicaID, request_id: str) -> None:
        """The replica took the request, refused it, or ran it: it may be handed on."""
        if self._handed.get(replica_id, ("",))[0] == request_id:
            del self._handed[replica_id]

    def _forget_old(self, now: float) -> None:
        """Drop what no longer says anything: old routings, jobs waiting no more (routed by another's
        routing task, or cancelled), and running ones whose end came before their start was told
        (a quick stream can end first)."""
        for key in [key for key, at in self._routed.items() if now - at > ROUTED_MEMORY_S]:
            del self._routed[key]
        for model_id in list(self._waiting):
            waiting = self._waiting[model_id]
            for request_id in [key for key, request in waiting.items() if request.future.done()]:
                del waiting[request_id]
            if not waiting:
                del self._waiting[model_id]
        for request_id in [key for key, (_, at) in self._running.items() if now - at > RUNNING_MEMORY_S]:
            del self._running[request_id]

    def _count_waiting(self, model_id: str, pending_request: PendingRequest) -> int:
        waiting = self._waiting[model_id]
        waiting[pending_request.metadata.internal_request_id] = pending_request
        for request_id in [key for key, request in waiting.items() if request.future.done()]:
            del waiting[request_id]  # routed (perhaps by another's routing task) or cancelled
        return max(len(waiting), 1)

    def _recently_routed(self) -> dict[ReplicaID, set[str]]:
        now, models = time.monotonic(), defaultdict(set)
        for (model_id, replica_id), at in self._routed.items():
            if now - at <= ROUTED_MEMORY_S:
                models[replica_id].add(model_id)
        return models


def turn_of(request: PendingRequest) -> Turn | None:
    """The job's place in line, as the Planner sends it to the role (``generate(..., turn=)``)."""
    return request.kwargs.get("turn")
