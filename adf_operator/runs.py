"""DataFlowRun logic as pure functions: the run body for a slot, the run's status from its Job and
pods, cancellation, and which finished runs to prune.

Phases only move forward (Pending -> Running -> Succeeded | Failed | Cancelled); a final phase is
never left, so a stale or repeated observation cannot undo an outcome.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from adf_core.errors import ExitCode
from adf_operator import names
from adf_operator.jobs import Body, owner_reference
from adf_operator.models import FINAL_PHASES, Condition, DataFlowRunStatus, RunPhase

Trigger = Literal["schedule", "manual", "backfill"]
MAX_MESSAGE = 1024
_STARTING = ("ContainerCreating", "PodInitializing")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@")
_EXIT_MEANINGS: dict[int, str] = {
    ExitCode.INVALID_SPEC: "invalid spec",
    ExitCode.CONNECTION: "connection failure or missing table, column or callable",
    ExitCode.DATA: "data failure",
}


class RunSummary(BaseModel):
    """The engine's run summary, written to the container's termination-message file."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    rows_read: int | None = None
    rows_written: int | None = None
    rows_skipped: int | None = None
    rows_failed: int | None = None
    cursor_start: Any = None
    cursor_end: Any = None
    duration_seconds: float | None = None
    error: str | None = None
    exit_code: int | None = None


def parse_time(text: str | None) -> datetime | None:
    """A Kubernetes timestamp (RFC 3339) as an aware datetime."""
    return datetime.fromisoformat(text).astimezone(UTC) if text else None


def mask_secrets(text: str) -> str:
    """Hide passwords in URLs (``postgresql://u:secret@h`` -> ``postgresql://u:***@h``): a last line
    of defence, since the engine's messages are meant to hold no secret already."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


def _clip(text: str) -> str:
    text = mask_secrets(text.strip())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def format_duration(span: timedelta) -> str:
    """``1h2m3s`` style, as kubectl prints durations."""
    seconds = max(0, int(span.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (seconds, "s")]
    text = "".join(f"{n}{unit}" for n, unit in parts if n)
    return text or "0s"


def build_run(
    flow_body: Mapping[str, Any],
    name: str,
    trigger: Trigger,
    scheduled_time: datetime | None = None,
) -> Body:
    """The DataFlowRun for a slot or a run-now request, owned by its flow (deletion cascades)."""
    flow = flow_body["metadata"]["name"]
    spec: Body = {"dataFlowRef": {"name": flow}, "trigger": trigger}
    if scheduled_time is not None:
        spec["scheduledTime"] = scheduled_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": names.API,
        "kind": "DataFlowRun",
        "metadata": {
            "name": name,
            "namespace": flow_body["metadata"]["namespace"],
            "labels": {names.LABEL_FLOW: flow, names.LABEL_MANAGED_BY: names.MANAGER},
            "ownerReferences": [owner_reference(flow_body)],
        },
        "spec": spec,
    }


def is_active(run: Mapping[str, Any]) -> bool:
    """Whether a run has not reached a final phase (a brand-new run has no status yet)."""
    return (run.get("status") or {}).get("phase") not in FINAL_PHASES


def _final(
    status: DataFlowRunStatus,
    phase: RunPhase,
    reason: str,
    message: str | None,
    at: datetime,
) -> DataFlowRunStatus:
    condition = Condition(
        type="Complete" if phase == "Succeeded" else "Failed",
        status="True",
        reason=reason,
        message=message or "",
        last_transition_time=at,
    )
    start = status.start_time or at
    return status.model_copy(
        update={
            "phase": phase,
            "completion_time": at,
            "duration": format_duration(at - start),
            "message": message,
            "conditions": [*status.conditions, condition],
        }
    )


def cancel(status: DataFlowRunStatus, message: str, now: datetime) -> DataFlowRunStatus:
    """The run is cancelled (Replace policy); a finished run keeps its outcome."""
    if status.phase in FINAL_PHASES:
        return status
    return _final(status, "Cancelled", "Cancelled", message, now)


def fail(status: DataFlowRunStatus, reason: str, message: str, now: datetime) -> DataFlowRunStatus:
    """The run cannot start or continue (no flow, invalid flow, Job vanished)."""
    if status.phase in FINAL_PHASES:
        return status
    return _final(status, "Failed", reason, _clip(message), now)


def latest_termination(pods: Sequence[Mapping[str, Any]]) -> tuple[int, str] | None:
    """Exit code and termination message of the engine container of the latest finished pod."""
    finished: list[tuple[str, int, str]] = []
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated")
            if container.get("name") == names.CONTAINER and terminated:
                finished.append(
                    (
                        terminated.get("finishedAt") or "",
                        int(terminated.get("exitCode", 0)),
                        terminated.get("message") or "",
                    )
                )
    if not finished:
        return None
    _, code, message = max(finished, key=lambda item: item[0])
    return code, message


def waiting_reason(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the engine container cannot start (a missing Secret, an image that cannot be pulled):
    Kubernetes keeps retrying such a pod until activeDeadlineSeconds, so the run says why."""
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") not in (None, *_STARTING):
                return f"{waiting['reason']}: {waiting.get('message') or 'waiting'}"
    return None


def parse_summary(exit_code: int, message: str) -> RunSummary:
    """The engine's JSON summary; for a pod that died before writing it, the tail of its log."""
    try:
        summary = RunSummary.model_validate(json.loads(message))
    except (ValueError, ValidationError):
        lines = [line for line in message.splitlines() if line.strip()]
        summary = RunSummary(error=lines[-1] if lines else None)
    if summary.exit_code is None:
        summary = summary.model_copy(update={"exit_code": exit_code})
    return summary


def _cursor(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _apply_summary(status: DataFlowRunStatus, summary: RunSummary) -> DataFlowRunStatus:
    return status.model_copy(
        update={
            "rows_read": summary.rows_read,
            "rows_written": summary.rows_written,
            "rows_skipped": summary.rows_skipped,
            "rows_failed": summary.rows_failed,
            "cursor_start": _cursor(summary.cursor_start),
            "cursor_end": _cursor(summary.cursor_end),
            "exit_code": summary.exit_code,
        }
    )


def _job_condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def _failure_message(summary: RunSummary | None, condition: Mapping[str, Any]) -> str:
    if summary is not None and summary.error:
        return summary.error
    if summary is not None and summary.exit_code in _EXIT_MEANINGS:
        return f"engine exited with code {summary.exit_code} ({_EXIT_MEANINGS[summary.exit_code]})"
    reason = condition.get("reason") or "Failed"
    return f"{reason}: {condition.get('message') or 'the Job failed'}"


def _success_message(status: DataFlowRunStatus) -> str:
    counts = [
        f"{status.rows_read or 0} read",
        f"{status.rows_written or 0} written",
        f"{status.rows_skipped or 0} skipped",
        f"{status.rows_failed or 0} failed",
    ]
    return "rows: " + ", ".join(counts)


def observe(
    status: DataFlowRunStatus,
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    now: datetime,
) -> DataFlowRunStatus:
    """The run's status given its Job and pods as they are now."""
    if status.phase in FINAL_PHASES:
        return status
    if job is None:
        if status.job_name is None:  # not launched yet
            return status
        message = f"Job {status.job_name} disappeared before the run finished"
        return fail(status, "JobDeleted", message, now)
    job_status = job.get("status") or {}
    counted = sum(int(job_status.get(k) or 0) for k in ("active", "succeeded", "failed"))
    status = status.model_copy(
        update={
            "job_name": job["metadata"]["name"],
            "attempts": max(len(pods), counted, status.attempts or 0),
            "start_time": status.start_time or parse_time(job_status.get("startTime")),
        }
    )
    termination = latest_termination(pods)
    summary = parse_summary(*termination) if termination else None
    if summary is not None:
        status = _apply_summary(status, summary)
    complete = _job_condition(job, "Complete")
    if complete is not None:
        done = parse_time(job_status.get("completionTime") or complete.get("lastTransitionTime"))
        return _final(status, "Succeeded", "Succeeded", _success_message(status), done or now)
    failed = _job_condition(job, "Failed")
    if failed is not None:
        done = parse_time(failed.get("lastTransitionTime")) or now
        reason = failed.get("reason") or "Failed"
        return _final(status, "Failed", reason, _clip(_failure_message(summary, failed)), done)
    running = any((p.get("status") or {}).get("phase") == "Running" for p in pods)
    phase: RunPhase = "Running" if running or status.phase == "Running" else "Pending"
    waiting = waiting_reason(pods)
    return status.model_copy(update={"phase": phase, "message": waiting and _clip(waiting)})


def job_event_matters(event_type: str | None, job: Mapping[str, Any]) -> bool:
    """Only a finished or deleted Job can change its run (pods report Running): skipping the rest
    saves three API calls per event."""
    finished = _job_condition(job, "Complete") or _job_condition(job, "Failed")
    return event_type == "DELETED" or finished is not None


def pod_event_matters(event_type: str | None, pod: Mapping[str, Any]) -> bool:
    """A pod starting normally changes nothing; a stuck, running, finished or deleted one may."""
    phase = (pod.get("status") or {}).get("phase")
    stuck = waiting_reason([pod]) is not None
    return event_type == "DELETED" or stuck or phase in ("Running", "Succeeded", "Failed")


def _finished_at(run: Mapping[str, Any]) -> str:
    status = run.get("status") or {}
    return str(status.get("completionTime") or run["metadata"].get("creationTimestamp") or "")


def runs_to_prune(
    runs: Iterable[Mapping[str, Any]], successful_limit: int, failed_limit: int
) -> list[str]:
    """Names of finished runs beyond the history limits, oldest first.

    Succeeded runs count against successfulRunsHistoryLimit; Failed and Cancelled ones against
    failedRunsHistoryLimit. Active runs are never pruned.
    """
    succeeded: list[Mapping[str, Any]] = []
    failed: list[Mapping[str, Any]] = []
    for run in runs:
        phase = (run.get("status") or {}).get("phase")
        if phase == "Succeeded":
            succeeded.append(run)
        elif phase in FINAL_PHASES:
            failed.append(run)
    doomed: list[Mapping[str, Any]] = []
    for group, limit in ((succeeded, successful_limit), (failed, failed_limit)):
        group.sort(key=_finished_at, reverse=True)
        doomed.extend(group[limit:])
    doomed.sort(key=_finished_at)
    return [run["metadata"]["name"] for run in doomed]
