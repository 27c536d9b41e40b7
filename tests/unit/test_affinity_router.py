"""The model roles' routing policy: a job waits for the replicas holding its model while they are
not overloaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deployments.affinity_router import rank
from deployments.turns import Turn


@dataclass(eq=False)
class Replica:
    name: str
    multiplexed_model_ids: set[str] = field(default_factory=set)

    @property
    def replica_id(self) -> str:
        return self.name


A, B, EMPTY = Replica("a", {"sd15"}), Replica("b", {"sdxl", "sd15"}), Replica("empty")


def names(ranked: list[list[Replica]]) -> list[list[str]]:
    return [sorted(replica.name for replica in replicas) for replicas in ranked]


def test_a_job_waits_for_the_replicas_that_hold_its_model() -> None:
    assert names(rank([A, B], "sd15")) == [["a", "b"]]
    assert names(rank([A, B], "sdxl", waited_s=9.9, wait_s=10, waiting=2, spill_depth=2)) == [["b"]]


def test_when_every_holder_is_full_a_replica_holding_no_model_takes_it() -> None:
    assert names(rank([EMPTY, A, B], "sdxl")) == [["b"], ["empty"]]
    assert names(rank([A, B, EMPTY], "sd15")) == [["a", "b"], ["empty"]]


def test_past_the_wait_any_replica_takes_it_holders_first_then_the_emptiest() -> None:
    assert names(rank([A, B, EMPTY], "sdxl", waited_s=10.0, wait_s=10)) == [["b"], ["empty"], ["a"]]


def test_a_deep_queue_of_one_model_spills_over_to_other_replicas() -> None:
    assert names(rank([A, B, EMPTY], "sdxl", waiting=3, spill_depth=2)) == [["b"], ["empty"], ["a"]]
    assert names(rank([A, B], "sd15", waiting=4, spill_depth=2)) == [["a", "b"]]  # two holders
    assert names(rank([A, B, EMPTY], "sd15", waiting=5, spill_depth=2)) == [["a", "b"], ["empty"]]


def test_a_model_nobody_holds_goes_to_the_replicas_with_the_fewest_models() -> None:
    assert names(rank([A, B, EMPTY], "other")) == [["empty"], ["a", "b"]]
    assert names(rank([A, B], "other")) == [["a"], ["b"]]


def test_a_replica_sent_a_model_counts_as_holding_it_before_it_reports_it() -> None:
    fresh, other = Replica("fresh"), Replica("other")
    routed = {fresh.replica_id: {"sd15"}}
    assert names(rank([fresh, A], "sd15", routed=routed)) == [["a", "fresh"]]  # not idle: no group of its own
    assert names(rank([fresh, B], "sdxl", routed=routed)) == [["b"]]
    # ...and as holding one model more when a new one is placed.
    assert names(rank([fresh, other], "sdxl", routed=routed)) == [["other"], ["fresh"]]


def test_without_a_model_two_replicas_at_random() -> None:
    ranked = rank([A, B, EMPTY], "")
    assert len(ranked) == 1 and len(ranked[0]) == 2 and len(set(map(id, ranked[0]))) == 2
    assert rank([], "") == [] and names(rank([A], "")) == [["a"]]


def test_the_roles_route_with_it() -> None:
    from deployments.base import Base

    config = Base._deployment_config.request_router_config
    assert config.request_router_class == "deployments.affinity_router:ModelAffinityRouter"
    assert config.max_backoff_s <= 0.05


def test_two_new_models_routed_at_once_go_to_different_replicas() -> None:
    """A replica counts as holding a model from the moment it is chosen for it, not from its answer
    a round trip later: meanwhile a replica with a free second slot would take a second new model."""
    import asyncio

    one, two = Replica("one"), Replica("two")

    async def choices() -> list[list[list[Replica]]]:
        router = _router()
        return [
            await router.choose_replicas([one, two], _pending(str(index), model))
            for index, model in enumerate(["sd15", "sdxl", "sd15"])
        ]  # type: ignore[arg-type]

    sd15, sdxl, sd15_again = asyncio.run(choices())
    assert len(sd15[0]) == 1 and len(sdxl[0]) == 1 and sd15[0] != sdxl[0]
    assert sd15_again[0] == sd15[0]  # the next job of a model waits for the replica chosen for it


def _router() -> Any:
    """Serve's router of the model roles, as a handle builds it (without replicas)."""
    from ray.serve._private.common import DeploymentHandleSource, DeploymentID

    from deployments.affinity_router import ModelAffinityRouter

    router = ModelAffinityRouter(DeploymentID(name="Base", app_name="enfugue"), DeploymentHandleSource.UNKNOWN)
    router.initialize_state()
    return router


def _pending(request_id: str, model_id: str = "sd15", turn: Turn | None = None) -> Any:
    """A job as Serve's router holds it while it waits (call inside an event loop)."""
    from ray.serve._private.common import RequestMetadata
    from ray.serve._private.request_router.common import PendingRequest

    metadata = RequestMetadata(request_id=request_id, internal_request_id=request_id, multiplexed_model_id=model_id)
    return PendingRequest(args=[], kwargs={"turn": turn}, metadata=metadata)


def _router_with_waiting(*turns: Turn) -> tuple[Any, list[Any]]:
    """The router with a job of one model waiting per turn (call inside an event loop)."""
    router, waiting = _router(), [_pending(str(index), turn=turn) for index, turn in enumerate(turns)]
    for request in waiting:
        router._add_pending_request_to_indices(request)
    return router, waiting


def test_a_replica_found_free_twice_before_it_answers_goes_to_one_job() -> None:
    """A freed replica is seen free by the job's end and by routing tasks at once: each would hand it
    to the fairest job left, and the replica would take whichever arrived first. It is handed once,
    and handed on only once it has taken, refused or run that job."""
    import asyncio

    async def hand_overs() -> None:
        later_of_a, first_of_b, next_of_a = Turn(owner=1, admitted=2), Turn(owner=2, admitted=7), Turn(1, 3)
        router, (a1, b0, a2) = _router_with_waiting(later_of_a, first_of_b, next_of_a)
        router._rotation.taken(Turn(owner=1, admitted=1))  # user 1's first job ran
        replica = Replica("base")
        for _ in range(3):  # the job's end and two routing tasks
            router._fulfill_next_pending_request(replica, b0.metadata)
        assert b0.future.done() and b0.future.result() is replica
        assert not a1.future.done() and not a2.future.done()

        router.on_request_routed(b0, replica.replica_id, None)  # taken: user 1's turn next
        router._fulfill_next_pending_request(replica, a1.metadata)
        router._fulfill_next_pending_request(replica, a1.metadata)
        assert a1.future.done() and not a2.future.done()

        router.on_request_completed(replica.replica_id, a1.metadata.internal_request_id)  # refused
        router._fulfill_next_pending_request(replica, a2.metadata)
        assert a2.future.done()

    asyncio.run(hand_overs())


def test_a_job_waiting_for_a_busy_replica_asks_again_after_a_backoff() -> None:
    """Serve's routing task backs off between tries only when the router says so; without it every
    waiting job probed the busy replicas nonstop, on the cores the jobs run on."""
    import asyncio

    async def chosen() -> bool:
        router, (job,) = _router_with_waiting(Turn(owner=1, admitted=1))
        await router.choose_replicas([Replica("base", {"sd15"})], job)
        return job.routing_context.should_backoff

    assert asyncio.run(chosen())
