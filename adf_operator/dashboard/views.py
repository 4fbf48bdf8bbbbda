"""What the dashboard and the JSON API show, as pydantic models built by pure functions from the
API server's objects (camelCase dicts).

One set of models serves both: the pages render them, the API dumps them, and the OpenAPI document
is generated from them, so the document cannot drift from the answers. Nothing here reads a
Secret; literal values that look secret (URL passwords, env values named like credentials) are
masked before they leave this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

from cron_descriptor import Options, get_description
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from adf_core.spec import parse_duration
from adf_operator import names
from adf_operator.models import FINAL_PHASES
from adf_operator.runs import mask_secrets, parse_time

Body = Mapping[str, Any]
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Cancelled")
PhaseFilter = Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled", "None"]
MASK = "***"
_SECRET_NAME = re.compile(r"pass|secret|token|credential|private|api_?key", re.IGNORECASE)


class View(BaseModel):
    """camelCase on the wire, like the Kubernetes objects the views come from."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class ConditionView(View):
    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_transition_time: str | None = None


class LastRun(View):
    """The flow's most recent run, with its row counts when the run still exists."""

    name: str
    phase: str | None = None
    time: str | None = None
    rows_read: int | None = None
    rows_written: int | None = None


class FlowSummary(View):
    """One row of the flows list."""

    namespace: str
    name: str
    schedule: str = Field(description="The schedule in words, with its time zone.")
    schedule_expression: str | None = Field(
        default=None, description="The cron expression or interval as written in the spec."
    )
    time_zone: str | None = None
    suspended: bool
    ready: bool | None = Field(default=None, description="The Ready condition; null if unknown.")
    last_run: LastRun | None = None
    last_successful_time: str | None = None
    next_run_time: str | None = None
    last_error: str | None = None


class RunView(View):
    """A DataFlowRun: its spec and everything in its status."""

    namespace: str
    name: str
    flow: str
    trigger: str | None = None
    scheduled_time: str | None = None
    window: dict[str, Any] | None = None
    created: str | None = None
    phase: str | None = None
    job_name: str | None = None
    start_time: str | None = None
    completion_time: str | None = None
    duration: str | None = None
    duration_seconds: float | None = Field(
        default=None, description="completionTime - startTime, for charts."
    )
    attempts: int | None = None
    rows_read: int | None = None
    rows_written: int | None = None
    rows_skipped: int | None = None
    rows_failed: int | None = None
    cursor_start: str | None = None
    cursor_end: str | None = None
    exit_code: int | None = None
    message: str | None = None
    conditions: list[ConditionView] = Field(default_factory=list)


class FlowDetail(FlowSummary):
    """A flow with its (masked) spec, conditions and status."""

    generation: int | None = None
    observed_generation: int | None = None
    conditions: list[ConditionView] = Field(default_factory=list)
    cursor: str | None = Field(default=None, description="The last committed watermark.")
    missed_slots: int | None = None
    last_schedule_time: str | None = None
    spec: dict[str, Any] = Field(
        description="The spec; Secret references as written, literal secrets masked."
    )


class FlowList(View):
    items: list[FlowSummary]


class RunList(View):
    items: list[RunView]


class RunNowAccepted(View):
    """What `run now` did: the annotation value, and the run the operator will create for it."""

    namespace: str
    flow: str
    request: str = Field(description="The value set on the activedataflow.io/run-now annotation.")
    run: str = Field(description="The name of the DataFlowRun the operator creates.")


class Purged(View):
    namespace: str
    flow: str
    deleted: list[str] = Field(description="The finished runs deleted.")


class ErrorDetail(View):
    code: str
    message: str


class ErrorBody(View):
    error: ErrorDetail


# --- building the views ---------------------------------------------------------------------------


def schedule_words(schedule: Mapping[str, Any] | None) -> str:
    """``Every 5 minutes (Europe/Berlin)``, ``Every 10 minutes``, or ``Manual only``."""
    if not schedule:
        return "Manual only"
    if schedule.get("every"):
        return f"Every {_interval_words(str(schedule['every']))}"
    zone = str(schedule.get("timeZone") or "UTC")
    return f"{_cron_words(str(schedule.get('cron', '')))} ({zone})"


@lru_cache(maxsize=1024)
def _cron_words(cron: str) -> str:
    """Cached: cron-descriptor loads its translations on every call (about 1 ms each)."""
    try:
        return str(get_description(cron, Options()))
    except Exception:  # cron-descriptor raises its own types, and ValueError on odd fields
        return f"cron {cron}"


def _interval_words(every: str) -> str:
    try:
        seconds = int(parse_duration(every).total_seconds())
    except ValueError:
        return every
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}" if count == 1 else f"{count} {unit}s"
    return every


def conditions(status: Body) -> list[ConditionView]:
    return [
        ConditionView(
            type=str(c.get("type", "")),
            status=str(c.get("status", "Unknown")),
            reason=c.get("reason"),
            message=_mask_text(c.get("message")),
            last_transition_time=c.get("lastTransitionTime"),
        )
        for c in status.get("conditions") or []
        if isinstance(c, Mapping)
    ]


def _ready(status: Body) -> bool | None:
    for condition in conditions(status):
        if condition.type == "Ready":
            return {"True": True, "False": False}.get(condition.status)
    return None


def _mask_text(text: Any) -> str | None:
    return None if text is None else mask_secrets(str(text))


def flow_summary(flow: Body, runs_by_name: Mapping[str, Body]) -> FlowSummary:
    """A flows-list row; `runs_by_name` gives the last run's row counts when it still exists."""
    return FlowSummary(**_summary_fields(flow, runs_by_name))


def _summary_fields(flow: Body, runs_by_name: Mapping[str, Body]) -> dict[str, Any]:
    meta, spec = flow["metadata"], flow.get("spec") or {}
    status = flow.get("status") or {}
    schedule = spec.get("schedule") or None
    last_run = None
    if status.get("lastRunName"):
        run_status = (runs_by_name.get(status["lastRunName"]) or {}).get("status") or {}
        last_run = LastRun(
            name=status["lastRunName"],
            phase=run_status.get("phase") or status.get("lastRunPhase"),
            time=status.get("lastRunTime"),
            rows_read=run_status.get("rowsRead"),
            rows_written=run_status.get("rowsWritten"),
        )
    return {
        "namespace": meta["namespace"],
        "name": meta["name"],
        "schedule": schedule_words(schedule),
        "schedule_expression": (schedule or {}).get("cron") or (schedule or {}).get("every"),
        "time_zone": (schedule or {}).get("timeZone", "UTC") if schedule else None,
        "suspended": bool(spec.get("suspend", False)),
        "ready": _ready(status),
        "last_run": last_run,
        "last_successful_time": status.get("lastSuccessfulTime"),
        "next_run_time": status.get("nextRunTime") or None,
        "last_error": _mask_text(status.get("lastError")),
    }


def flow_detail(flow: Body, runs_by_name: Mapping[str, Body]) -> FlowDetail:
    status = flow.get("status") or {}
    return FlowDetail(
        **_summary_fields(flow, runs_by_name),
        generation=flow["metadata"].get("generation"),
        observed_generation=status.get("observedGeneration"),
        conditions=conditions(status),
        cursor=status.get("cursor"),
        missed_slots=status.get("missedSlots"),
        last_schedule_time=status.get("lastScheduleTime"),
        spec=masked_spec(flow.get("spec") or {}),
    )


def masked_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec as written, except literal secrets: URL passwords in every string, and the values
    of env entries whose names say they hold a credential. secretKeyRef stays as it is: it is a
    reference, and the dashboard never reads Secrets."""
    masked = _mask(spec)
    env = (masked.get("runTemplate") or {}).get("env")
    for entry in env if isinstance(env, list) else []:
        if (
            isinstance(entry, dict)
            and "value" in entry
            and _SECRET_NAME.search(str(entry.get("name")))
        ):
            entry["value"] = MASK
    return masked  # type: ignore[no-any-return]


def _mask(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, str):
        return mask_secrets(value)
    return value


def run_flow_name(run: Body) -> str:
    spec = run.get("spec") or {}
    labels = run["metadata"].get("labels") or {}
    return str((spec.get("dataFlowRef") or {}).get("name") or labels.get(names.LABEL_FLOW, ""))


def run_view(run: Body) -> RunView:
    meta, spec = run["metadata"], run.get("spec") or {}
    status = run.get("status") or {}
    return RunView(
        namespace=meta["namespace"],
        name=meta["name"],
        flow=run_flow_name(run),
        trigger=spec.get("trigger"),
        scheduled_time=spec.get("scheduledTime"),
        window=spec.get("window"),
        created=meta.get("creationTimestamp"),
        phase=status.get("phase"),
        job_name=status.get("jobName"),
        start_time=status.get("startTime"),
        completion_time=status.get("completionTime"),
        duration=status.get("duration"),
        duration_seconds=_seconds_between(status.get("startTime"), status.get("completionTime")),
        attempts=status.get("attempts"),
        rows_read=status.get("rowsRead"),
        rows_written=status.get("rowsWritten"),
        rows_skipped=status.get("rowsSkipped"),
        rows_failed=status.get("rowsFailed"),
        cursor_start=status.get("cursorStart"),
        cursor_end=status.get("cursorEnd"),
        exit_code=status.get("exitCode"),
        message=_mask_text(status.get("message")),
        conditions=conditions(status),
    )


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        begin, finish = parse_time(start), parse_time(end)
    except ValueError:
        return None
    assert begin is not None and finish is not None
    return max(0.0, (finish - begin).total_seconds())


def runs_of(flow: str, runs: Iterable[Body]) -> list[Body]:
    """The runs of one flow, newest first."""
    mine = [r for r in runs if run_flow_name(r) == flow]
    return sorted(mine, key=_created, reverse=True)


def _created(run: Body) -> tuple[str, str]:
    meta = run["metadata"]
    return (str(meta.get("creationTimestamp", "")), str(meta["name"]))


def finished(runs: Iterable[Body]) -> list[str]:
    """Names of the runs in a final phase (what purge deletes)."""
    return [
        r["metadata"]["name"] for r in runs if (r.get("status") or {}).get("phase") in FINAL_PHASES
    ]


def matches_phase(summary: FlowSummary, phase: str | None) -> bool:
    """The phase filter: the last run's phase; "None" picks flows that never ran."""
    if not phase:
        return True
    current = summary.last_run.phase if summary.last_run else None
    return (current or "None") == phase


def sort_flows(flows: Sequence[FlowSummary]) -> list[FlowSummary]:
    return sorted(flows, key=lambda f: (f.namespace, f.name))


def relative(when: str | None, now: datetime | None = None) -> str:
    """``5 min ago`` / ``in 2 h`` for a Kubernetes timestamp; empty for none."""
    if not when:
        return ""
    try:
        instant = parse_time(when)
    except ValueError:
        return when
    assert instant is not None
    delta = int((instant - (now or datetime.now(UTC))).total_seconds())
    size = abs(delta)
    if size < 60:
        amount = f"{size} s"
    elif size < 3600:
        amount = f"{size // 60} min"
    elif size < 86400:
        amount = f"{size // 3600} h {size % 3600 // 60} min"
    elif size < 365 * 86400:
        amount = f"{size // 86400} d {size % 86400 // 3600} h"
    else:
        amount = f"{size / (365.25 * 86400):.1f} years"
    return f"in {amount}" if delta > 0 else f"{amount} ago"


# --- the pages' extra views: a readable spec, a run's Job, pods and events -----------------------


def value_words(source: Mapping[str, Any] | None) -> str:
    """A ValueSource as a person reads it: the Secret reference, or the (masked) literal."""
    if not source:
        return ""
    ref = source.get("secretKeyRef")
    if isinstance(ref, Mapping):
        return f"from Secret {ref.get('name')}, key {ref.get('key')}"
    return mask_secrets(str(source.get("value", "")))


def _step_words(step: Mapping[str, Any]) -> str:
    if "rename" in step:
        return "rename " + ", ".join(f"{a} → {b}" for a, b in (step["rename"] or {}).items())
    if "python" in step:
        python = step["python"] or {}
        where = f" (ConfigMap {python['configMap']})" if python.get("configMap") else ""
        return f"python {python.get('callable')}{where}"
    for kind in ("select", "drop"):
        if kind in step:
            return f"{kind} {', '.join(map(str, step[kind] or []))}"
    if "set" in step:
        return "set " + ", ".join(f"{k} = {_mask(v)}" for k, v in (step["set"] or {}).items())
    return str(_mask(dict(step)))


def spec_outline(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The spec in words, one (label, text) pair per line of the flow page."""
    source = (spec.get("source") or {}).get("sql") or {}
    sink = (spec.get("sink") or {}).get("sql") or {}
    cursor = source.get("cursor") or {}
    reads = f"table {source['table']}" if source.get("table") else "a query"
    if source.get("where"):
        reads += f" where {source['where']}"
    if cursor:
        reads += f", incremental on {cursor.get('column')}"
        if cursor.get("tieBreaker"):
            reads += f" (tie-breaker {cursor['tieBreaker']})"
    else:
        reads += ", full read each run"
    reads += f", batches of {source.get('batchSize', 1000)}"
    writes = f"table {sink.get('table')}, mode {sink.get('mode', 'append')}"
    if sink.get("keys"):
        writes += f" on {', '.join(sink['keys'])}"
    if sink.get("skipUnchanged"):
        writes += ", unchanged rows skipped"
    steps = [_step_words(s) for s in spec.get("transform") or [] if isinstance(s, Mapping)]
    template = spec.get("runTemplate") or {}
    lines = [
        ("Source", f"SQL: {reads}"),
        ("Source database", value_words(source.get("url"))),
        ("Transform", "; ".join(steps) or "none (rows pass through)"),
        ("Sink", f"SQL: {writes}"),
        ("Sink database", value_words(sink.get("url"))),
        ("Schedule", schedule_words(spec.get("schedule"))),
        ("Suspended", "yes" if spec.get("suspend") else "no"),
        ("Concurrency", str(spec.get("concurrencyPolicy", "Forbid"))),
        ("On row error", str(spec.get("onError", "fail"))),
        ("Max rows per run", str(spec.get("maxRowsPerRun") or "no limit")),
        (
            "History kept",
            f"{spec.get('successfulRunsHistoryLimit', 3)} succeeded, "
            f"{spec.get('failedRunsHistoryLimit', 3)} failed",
        ),
        ("Run image", str(template.get("image") or "the operator's default")),
    ]
    if spec.get("startingDeadlineSeconds") is not None:
        lines.append(("Starting deadline", f"{spec['startingDeadlineSeconds']} s"))
    return lines


class EventView(View):
    type: str | None = None
    reason: str | None = None
    message: str | None = None
    count: int | None = None
    time: str | None = None
    source: str | None = None


def event_view(event: Body) -> EventView:
    source = event.get("source") or {}
    return EventView(
        type=event.get("type"),
        reason=event.get("reason"),
        message=_mask_text(event.get("message") or event.get("note")),
        count=event.get("count"),
        time=event.get("lastTimestamp")
        or event.get("eventTime")
        or event["metadata"].get("creationTimestamp"),
        source=source.get("component") or event.get("reportingComponent"),
    )


class PodView(View):
    name: str
    phase: str | None = None
    node: str | None = None
    state: str = ""
    exit_code: int | None = None
    restarts: int = 0


def pod_view(pod: Body) -> PodView:
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or [{}]
    container = containers[0]
    state_name, state = next(iter((container.get("state") or {}).items()), ("", None))
    state = state if isinstance(state, Mapping) else {}
    detail = state.get("reason") or ""
    return PodView(
        name=pod["metadata"]["name"],
        phase=status.get("phase"),
        node=(pod.get("spec") or {}).get("nodeName"),
        state=f"{state_name} {detail}".strip(),
        exit_code=state.get("exitCode"),
        restarts=container.get("restartCount") or 0,
    )


class JobView(View):
    name: str
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    start_time: str | None = None
    completion_time: str | None = None
    conditions: list[ConditionView] = Field(default_factory=list)


def job_view(job: Body) -> JobView:
    status = job.get("status") or {}
    return JobView(
        name=job["metadata"]["name"],
        active=status.get("active") or 0,
        succeeded=status.get("succeeded") or 0,
        failed=status.get("failed") or 0,
        start_time=status.get("startTime"),
        completion_time=status.get("completionTime"),
        conditions=conditions(status),
    )
