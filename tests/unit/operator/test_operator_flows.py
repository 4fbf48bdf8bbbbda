"""DataFlow decisions: validation into conditions, due slots, concurrency, status after runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from operator_bodies import flow_body

from adf_core.spec import load_dataflow
from adf_operator import names
from adf_operator.flows import (
    after_run,
    after_slot,
    missed_slots,
    pending_slot,
    plan_trigger,
    reconcile,
    schedule_text,
)
from adf_operator.models import DataFlowRunStatus, DataFlowStatus

NOW = datetime(2026, 11, 27, 10, 3, 7, tzinfo=UTC)
SLOT = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _flow(**spec: Any) -> Any:
    body = flow_body(**spec)
    return load_dataflow({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})


def test_valid_flow_is_ready_with_next_run() -> None:
    result = reconcile(flow_body(), DataFlowStatus(), NOW)
    status = result.status
    assert result.flow is not None and result.events == []
    assert status.observed_generation == 2
    assert status.schedule == "every 10m"
    assert status.next_run_time == "2026-11-27T10:10:00Z"
    ready = {c.type: (c.status, c.reason) for c in status.conditions}
    assert ready == {"Ready": ("True", "Valid"), "Suspended": ("False", "Scheduling")}


def test_invalid_flow_names_the_field_and_warns_once() -> None:
    body = flow_body(sink={"sql": {"url": {"value": "sqlite://"}, "table": "t", "mode": "upsert"}})
    first = reconcile(body, DataFlowStatus(), NOW)
    assert first.flow is None
    ready = next(c for c in first.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", "InvalidSpec")
    assert "spec.sink.sql.keys" in ready.message
    assert [e.reason for e in first.events] == ["InvalidSpec"]
    assert first.status.next_run_time is None
    again = reconcile(body, first.status, NOW + timedelta(minutes=1))
    assert again.events == []
    ready_again = next(c for c in again.status.conditions if c.type == "Ready")
    assert ready_again.last_transition_time == NOW  # unchanged status keeps its transition time


def test_suspended_flow_has_no_next_run() -> None:
    status = reconcile(flow_body(suspend=True), DataFlowStatus(), NOW).status
    assert status.next_run_time is None
    suspended = next(c for c in status.conditions if c.type == "Suspended")
    assert (suspended.status, suspended.reason) == ("True", "Suspended")


def test_schedule_text() -> None:
    assert schedule_text(_flow().spec.schedule) == "every 10m"
    cron = _flow(schedule={"cron": "*/5 * * * *", "timeZone": "Europe/Berlin"}).spec.schedule
    assert schedule_text(cron) == "*/5 * * * * Europe/Berlin"
    assert schedule_text(None) == "manual"


def test_pending_slot_only_when_newer_than_the_last_handled() -> None:
    annotations = {names.SCHEDULED_TIME: "2026-11-27T10:00:00Z", names.MISSED_SLOTS: "3"}
    assert pending_slot(annotations, DataFlowStatus()) == SLOT
    assert pending_slot(annotations, DataFlowStatus(last_schedule_time=SLOT)) is None
    earlier = DataFlowStatus(last_schedule_time=SLOT - timedelta(minutes=10))
    assert pending_slot(annotations, earlier) == SLOT
    assert pending_slot({}, DataFlowStatus()) is None
    assert missed_slots(annotations) == 3
    assert missed_slots({names.MISSED_SLOTS: "lots"}) == 0


def test_plan_slot_policies() -> None:
    assert plan_trigger(_flow(), [], slot=SLOT, now=NOW).action == "create"
    forbid = plan_trigger(_flow(), ["f-1"], slot=SLOT, now=NOW)
    assert (forbid.action, forbid.events[0].reason) == ("skip", "ConcurrencyForbid")
    assert "f-1" in forbid.events[0].message
    replace = plan_trigger(_flow(concurrencyPolicy="Replace"), ["f-1"], slot=SLOT, now=NOW)
    assert (replace.action, replace.cancel) == ("create", ["f-1"])
    allow = plan_trigger(_flow(concurrencyPolicy="Allow"), ["f-1"], slot=SLOT, now=NOW)
    assert (allow.action, allow.cancel, allow.events) == ("create", [], [])
    suspended = plan_trigger(_flow(suspend=True), [], slot=SLOT, now=NOW)
    assert (suspended.action, suspended.events[0].reason) == ("skip", "SlotSkipped")


def test_starting_deadline() -> None:
    late = plan_trigger(_flow(startingDeadlineSeconds=60), [], slot=SLOT, now=NOW)
    assert (late.action, late.events[0].type) == ("skip", "Warning")
    assert "187s late" in late.events[0].message
    assert (
        plan_trigger(_flow(startingDeadlineSeconds=300), [], slot=SLOT, now=NOW).action == "create"
    )


def test_run_now_ignores_suspend_but_not_concurrency() -> None:
    assert plan_trigger(_flow(suspend=True), [], slot=None, now=NOW).action == "create"
    assert plan_trigger(_flow(), ["f-1"], slot=None, now=NOW).action == "skip"


def test_after_slot_records_time_next_run_and_missed() -> None:
    status, events = after_slot(DataFlowStatus(), _flow(), SLOT, 4, NOW)
    assert status.last_schedule_time == SLOT
    assert status.missed_slots == 4
    assert status.next_run_time == "2026-11-27T10:10:00Z"
    assert [(e.type, e.reason) for e in events] == [("Warning", "MissedSlots")]
    assert after_slot(DataFlowStatus(), _flow(), SLOT, 0, NOW)[1] == []


def _run(name: str, created: str, trigger: str = "schedule") -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created}, "spec": {"trigger": trigger}}


def test_after_run_follows_the_newest_run() -> None:
    done = datetime(2026, 11, 27, 10, 1, tzinfo=UTC)
    started = after_run(
        DataFlowStatus(), _run("f-1", "2026-11-27T10:00:00Z"), DataFlowRunStatus(phase="Pending")
    )
    assert (started.last_run_name, started.last_run_phase) == ("f-1", "Pending")
    assert started.last_run_time == SLOT
    newer = after_run(
        started, _run("f-2", "2026-11-27T10:00:30Z"), DataFlowRunStatus(phase="Running")
    )
    assert newer.last_run_name == "f-2"
    ok = DataFlowRunStatus(phase="Succeeded", completion_time=done, cursor_end="42")
    late_old = after_run(newer, _run("f-1", "2026-11-27T10:00:00Z"), ok)
    assert (late_old.last_run_name, late_old.last_run_phase) == ("f-2", "Running")
    assert (late_old.last_successful_time, late_old.cursor) == (done, "42")
    failed = DataFlowRunStatus(phase="Failed", message="no such table: products")
    broken = after_run(late_old, _run("f-2", "2026-11-27T10:00:30Z"), failed)
    assert (broken.last_run_phase, broken.last_error) == ("Failed", "f-2: no such table: products")
    backfill = after_run(broken, _run("f-3", "2026-11-27T10:02:00Z", "backfill"), ok)
    assert backfill.cursor == "42" and backfill.last_error is None
    assert (
        after_run(
            backfill,
            _run("f-4", "2026-11-27T10:03:00Z", "backfill"),
            ok.model_copy(update={"cursor_end": "99"}),
        ).cursor
        == "42"
    )
