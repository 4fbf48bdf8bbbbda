"""When a flow's trigger is pending, and the watch cache the operator reads flows from."""

from __future__ import annotations

from typing import Any

import pytest
from operator_bodies import flow_body

from adf_operator import names
from adf_operator.actions import trigger_pending
from adf_operator.cache import FlowCache, RunCache


def _with(annotations: dict[str, str], status: dict[str, Any] | None = None) -> dict[str, Any]:
    body = flow_body()
    body["metadata"]["annotations"] = annotations
    if status is not None:
        body["status"] = status
    return body


@pytest.mark.parametrize(
    ("annotations", "status", "pending"),
    [
        ({}, None, False),
        ({names.SCHEDULED_TIME: "2026-11-27T10:00:00Z"}, None, True),
        (
            {names.SCHEDULED_TIME: "2026-11-27T10:00:00Z"},
            {"lastScheduleTime": "2026-11-27T09:50:00Z"},
            True,
        ),
        (
            {names.SCHEDULED_TIME: "2026-11-27T10:00:00Z"},
            {"lastScheduleTime": "2026-11-27T10:00:00Z"},
            False,
        ),
        ({names.RUN_NOW: "request-1"}, {"lastScheduleTime": "2026-11-27T10:00:00Z"}, True),
    ],
    ids=["nothing", "first slot", "newer slot", "slot handled", "run-now"],
)
def test_a_trigger_is_pending_until_the_status_records_it(
    annotations: dict[str, str], status: dict[str, Any] | None, pending: bool
) -> None:
    assert trigger_pending(_with(annotations, status)) is pending


def test_the_cache_holds_the_latest_flow_until_it_is_deleted() -> None:
    cache = FlowCache()
    body = flow_body()
    assert cache.get("shop", "product-sync") is None
    cache.seen(body)
    newer = {**body, "metadata": {**body["metadata"], "resourceVersion": "2"}}
    cache.seen(newer)
    assert cache.get("shop", "product-sync") == newer
    cache.seen(newer, deleted=True)
    assert cache.get("shop", "product-sync") is None
    assert len(cache) == 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_run_cache_refuses_to_answer_without_an_index() -> None:
    # An empty answer would let a Forbid flow start a second run.
    with pytest.raises(RuntimeError, match="index is not attached"):
        RunCache().of_flow("ns", "sync")


def test_the_run_cache_reads_the_index_by_flow() -> None:
    cache = RunCache()
    cache.index = {("ns", "sync"): [("sync-1", False), ("sync-2", True)]}
    assert sorted(cache.of_flow("ns", "sync")) == [("sync-1", False), ("sync-2", True)]
    assert cache.of_flow("ns", "other") == []
    assert cache.of_flow("other-ns", "sync") == []


def test_a_run_created_here_counts_as_active_until_the_index_shows_it() -> None:
    clock = Clock()
    index: dict[tuple[str, str], list[tuple[str, bool]]] = {}
    cache = RunCache(memory=300, clock=clock)
    cache.index = index
    cache.created("ns", "sync", "sync-3")
    assert cache.of_flow("ns", "sync") == [("sync-3", True)]  # the watch has not delivered it
    index[("ns", "sync")] = [("sync-3", False)]  # delivered, and already finished
    assert cache.of_flow("ns", "sync") == [("sync-3", False)]
    index.clear()  # gone from the index (deleted): not remembered any more either
    assert cache.of_flow("ns", "sync") == []


def test_the_run_cache_forgets_its_own_runs_after_its_memory() -> None:
    clock = Clock()
    cache = RunCache(memory=300, clock=clock)
    cache.index = {}
    cache.created("ns", "sync", "sync-4")
    clock.now += 299
    assert cache.of_flow("ns", "sync") == [("sync-4", True)]
    clock.now += 2
    assert cache.of_flow("ns", "sync") == []
