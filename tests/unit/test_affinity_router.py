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


def test_a_replica_holding_no_model_may_take_it_meanwhile_after_the_holders() -> None:
    """Idle capacity: Serve picks the least busy replica of the group, the first on a tie."""
    assert [replica.name for replica in rank([EMPTY, A, B], "sdxl")[0]] == ["b", "empty"]
    assert names(rank([A, B, EMPTY], "sd15")) == [["a", "b", "empty"]]


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
    assert names(rank([fresh, A], "sd15", routed=routed)) == [["a", "fresh"]]
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
