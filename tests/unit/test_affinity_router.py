"""The model roles' routing policy: a job waits for the replicas holding its model while they are
not overloaded."""

from __future__ import annotations

from dataclasses import dataclass, field

from deployments.affinity_router import rank


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
    import time
    from types import SimpleNamespace

    from deployments.affinity_router import ModelAffinityRouter

    router = object.__new__(ModelAffinityRouter)  # Serve builds it with a live deployment
    router.initialize_state()
    one, two = Replica("one"), Replica("two")

    def pending(model_id: str, request_id: str) -> SimpleNamespace:
        metadata = SimpleNamespace(multiplexed_model_id=model_id, internal_request_id=request_id)
        return SimpleNamespace(metadata=metadata, created_at=time.time(), future=SimpleNamespace(done=lambda: False))

    async def choices() -> list[list[list[Replica]]]:
        return [
            await router.choose_replicas([one, two], pending(model, str(index)))
            for index, model in enumerate(["sd15", "sdxl", "sd15"])
        ]  # type: ignore[arg-type]

    sd15, sdxl, sd15_again = asyncio.run(choices())
    assert len(sd15[0]) == 1 and len(sdxl[0]) == 1 and sd15[0] != sdxl[0]
    assert sd15_again[0] == sd15[0]  # the next job of a model waits for the replica chosen for it
