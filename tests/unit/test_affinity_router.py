"""The model roles' routing policy: a job waits for the replicas holding its model, for a while."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from deployments.affinity_router import AFFINITY_WAIT_S, ModelAffinityRouter, rank


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
    assert names(rank([A, B, EMPTY], "sd15", waited_s=0.0, wait_s=10)) == [["a", "b"]]
    assert names(rank([A, B, EMPTY], "sdxl", waited_s=9.9, wait_s=10)) == [["b"]]


def test_after_waiting_long_enough_any_replica_takes_it_holders_first() -> None:
    ranked = rank([A, B, EMPTY], "sdxl", waited_s=10.0, wait_s=10)
    assert names(ranked) == [["b"], ["empty"], ["a"]]


def test_a_model_nobody_holds_goes_to_the_replicas_with_the_fewest_models() -> None:
    assert names(rank([A, B, EMPTY], "other", waited_s=0.0, wait_s=10)) == [[], ["empty"], ["a", "b"]]
    assert names(rank([A, B], "other", waited_s=0.0, wait_s=10)) == [[], ["a"], ["b"]]


def test_without_a_model_two_replicas_at_random() -> None:
    ranked = rank([A, B, EMPTY], "", waited_s=0.0, wait_s=10)
    assert len(ranked) == 1 and len(ranked[0]) == 2 and len(set(map(id, ranked[0]))) == 2
    assert rank([], "", 0.0, 10) == [] and names(rank([A], "", 0.0, 10)) == [["a"]]


def test_the_roles_route_with_it() -> None:
    from deployments.base import Base

    config = Base._deployment_config.request_router_config
    assert config.request_router_class == "deployments.affinity_router:ModelAffinityRouter"
    assert config.max_backoff_s <= 0.05
    assert ModelAffinityRouter._wait_s == pytest.approx(AFFINITY_WAIT_S)


def test_a_replica_sent_a_model_counts_as_holding_it_before_it_reports_it() -> None:
    fresh, other = Replica("fresh"), Replica("other")
    routed = {fresh.replica_id: {"sd15"}}
    assert names(rank([fresh, other], "sd15", 0.0, 10, routed)) == [["fresh"]]
    # ...and as holding one model more when a new one is placed.
    assert names(rank([fresh, other], "sdxl", 0.0, 10, routed)) == [[], ["other"], ["fresh"]]
