"""DataFlow logic as pure functions: validation into conditions, what to do with a due slot, and
the flow's status after one of its runs moved on.

The handlers call these with what they read from the API and write back what they return, so every
decision (suspend, concurrency policy, starting deadline, missed slots) is unit-tested here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from adf_core.errors import SpecError
from adf_core.spec import DataFlow, ScheduleSpec, load_dataflow
from adf_operator import names
from adf_operator.models import Condition, DataFlowRunStatus, DataFlowStatus
from adf_operator.runs import parse_time
from adf_operator.schedule import ScheduleError, format_time, next_slot

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the flow."""

    type: EventType
    reason: str
    message: str


def schedule_text(schedule: ScheduleSpec | None) -> str:
    """The schedule in words for `kubectl get`: ``every 10m``, ``*/5 * * * * Europe/Berlin``."""
    if schedule is None:
        return "manual"
    if schedule.every is not None:
        return f"every {schedule.every}"
    zone = "" if schedule.time_zone == "UTC" else f" {schedule.time_zone}"
    return f"{schedule.cron}{zone}"


def set_condition(conditions: Sequence[Condition], new: Condition) -> list[Condition]:
    """Replace the condition of its type; keep the transition time if the status is unchanged."""
    old = next((c for c in conditions if c.type == new.type), None)
    if old is not None and old.status == new.status:
        new = new.model_copy(update={"last_transition_time": old.last_transition_time})
    return [*(c for c in conditions if c.type != new.type), new]


@dataclass(frozen=True)
class Reconciled:
    """The flow's status after validation; `flow` is None when the spec is invalid."""

    status: DataFlowStatus
    flow: DataFlow | None
    events: list[Event] = field(default_factory=list)


def reconcile(body: Mapping[str, Any], status: DataFlowStatus, now: datetime) -> Reconciled:
    """Validate the flow and set Ready, Suspended, observedGeneration, schedule and nextRunTime."""
    generation = body["metadata"].get("generation")
    events: list[Event] = []
    document = {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")}
    flow: DataFlow | None
    try:
        flow = load_dataflow(document)
        next_time = _next_run(flow, status, now)
        ready = Condition(
            type="Ready",
            status="True",
            reason="Valid",
            message="the spec is valid",
            last_transition_time=now,
            observed_generation=generation,
        )
    except (SpecError, ScheduleError) as exc:
        flow, next_time = None, None
        ready = Condition(
            type="Ready",
            status="False",
            reason="InvalidSpec",
            message=str(exc),
            last_transition_time=now,
            observed_generation=generation,
        )
        previous = next((c for c in status.conditions if c.type == "Ready"), None)
        if previous is None or previous.message != ready.message:
            events.append(Event("Warning", "InvalidSpec", str(exc)))
    suspended = bool(body["spec"].get("suspend"))
    suspend = Condition(
        type="Suspended",
        status="True" if suspended else "False",
        reason="Suspended" if suspended else "Scheduling",
        message="spec.suspend is true: no new runs are scheduled" if suspended else "",
        last_transition_time=now,
        observed_generation=generation,
    )
    conditions = set_condition(set_condition(status.conditions, ready), suspend)
    new_status = status.model_copy(
        update={
            "observed_generation": generation,
            "conditions": conditions,
            "schedule": schedule_text(flow.spec.schedule) if flow else None,
            "next_run_time": next_time,
        }
    )
    return Reconciled(new_status, flow, events)


def _next_run(flow: DataFlow, status: DataFlowStatus, now: datetime) -> str | None:
    schedule = flow.spec.schedule
    if schedule is None or flow.spec.suspend:
        return None
    after = max(now, status.last_schedule_time) if status.last_schedule_time else now
    return format_time(next_slot(schedule, after))


# --- due slots and run-now requests --------------------------------------------------------------

Action = Literal["create", "skip"]


@dataclass(frozen=True)
class Plan:
    """What to do with a trigger: create the run (cancelling `cancel` first) or skip it."""

    action: Action
    events: list[Event]
    cancel: list[str] = field(default_factory=list)


def pending_slot(annotations: Mapping[str, str], status: DataFlowStatus) -> datetime | None:
    """The slot the heartbeat asked for, if it is newer than the last one handled."""
    text = annotations.get(names.SCHEDULED_TIME)
    if not text:
        return None
    slot = parse_time(text)
    if slot is None or (status.last_schedule_time and slot <= status.last_schedule_time):
        return None
    return slot


def missed_slots(annotations: Mapping[str, str]) -> int:
    """The heartbeat's count of slots missed before the current one (0 when absent or garbled)."""
    text = annotations.get(names.MISSED_SLOTS, "0").strip()
    return int(text) if text.isdigit() else 0


def plan_trigger(
    flow: DataFlow,
    active_runs: Sequence[str],
    *,
    slot: datetime | None,
    now: datetime,
) -> Plan:
    """Apply suspend (slots only), startingDeadlineSeconds (slots only) and concurrencyPolicy.

    `slot` is None for a user's run-now request, which runs even when the flow is suspended (as
    `kubectl create job --from=cronjob/x` does) but respects the concurrency policy.
    """
    spec = flow.spec
    if slot is not None:
        when = format_time(slot)
        if spec.suspend:
            return Plan("skip", [Event("Normal", "SlotSkipped", f"slot {when}: flow is suspended")])
        deadline = spec.starting_deadline_seconds
        if deadline is not None and now - slot > timedelta(seconds=deadline):
            late = int((now - slot).total_seconds())
            message = f"slot {when} is {late}s late, past startingDeadlineSeconds ({deadline}s)"
            return Plan("skip", [Event("Warning", "MissedDeadline", message)])
    what = f"slot {format_time(slot)}" if slot else "run-now request"
    if active_runs and spec.concurrency_policy == "Forbid":
        message = f"{what} skipped: run {', '.join(active_runs)} is still active (Forbid)"
        return Plan("skip", [Event("Normal", "ConcurrencyForbid", message)])
    if active_runs and spec.concurrency_policy == "Replace":
        message = f"{what} replaces active run {', '.join(active_runs)} (Replace)"
        return Plan("create", [Event("Normal", "ConcurrencyReplace", message)], list(active_runs))
    return Plan("create", [])


def after_slot(
    status: DataFlowStatus, flow: DataFlow, slot: datetime, missed: int, now: datetime
) -> tuple[DataFlowStatus, list[Event]]:
    """Record a handled slot (run or skipped): lastScheduleTime, nextRunTime, missedSlots."""
    events = []
    if missed > 0:
        message = f"{missed} schedule slot(s) before {format_time(slot)} were missed"
        events.append(Event("Warning", "MissedSlots", message))
    updated = status.model_copy(update={"last_schedule_time": slot, "missed_slots": missed})
    updated = updated.model_copy(update={"next_run_time": _next_run(flow, updated, now)})
    return updated, events


# --- runs moving on ------------------------------------------------------------------------------


def after_run(
    status: DataFlowStatus,
    run: Mapping[str, Any],
    run_status: DataFlowRunStatus,
) -> DataFlowStatus:
    """The flow's status once one of its runs started or changed phase.

    An older run finishing late never hides a newer one: lastRunName/Phase follow the newest run.
    """
    name = run["metadata"]["name"]
    created = parse_time(run["metadata"].get("creationTimestamp"))
    update: dict[str, Any] = {}
    newest = status.last_run_time is None or (
        created is not None and created >= status.last_run_time
    )
    if name == status.last_run_name or newest:
        update |= {"last_run_name": name, "last_run_phase": run_status.phase}
        if created is not None and newest:
            update["last_run_time"] = created
    if run_status.phase == "Succeeded":
        done = run_status.completion_time
        if status.last_successful_time is None or (done and done >= status.last_successful_time):
            update |= {"last_successful_time": done, "last_error": None}
        if run["spec"].get("trigger") != "backfill" and run_status.cursor_end is not None:
            update["cursor"] = run_status.cursor_end
    elif run_status.phase == "Failed":
        update["last_error"] = f"{name}: {run_status.message or 'failed'}"
    return status.model_copy(update=update)
