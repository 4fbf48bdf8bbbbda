"""When a flow's trigger is pending, and the watch cache the operator reads flows from."""

from __future__ import annotations

from typing import Any

import pytest
from operator_bodies import flow_body

from adf_operator import names
from adf_operator.actions import trigger_pending
from adf_operator.cache import FlowCache


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
