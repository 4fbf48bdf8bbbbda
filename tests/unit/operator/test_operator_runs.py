"""Run status transitions from Job and pod state, summaries, cancellation and history pruning."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from adf_operator.models import DataFlowRunStatus
from adf_operator.runs import (
    cancel,
    format_duration,
    job_event_matters,
    mask_secrets,
    observe,
    parse_summary,
    pod_event_matters,
    runs_to_prune,
)

T0 = datetime(2026, 11, 27, 10, 0, 5, tzinfo=UTC)
LAUNCHED = DataFlowRunStatus(phase="Pending", job_name="f-1")


def _ts(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _job(*conditions: tuple[str, str, str], **status: Any) -> dict[str, Any]:
    conds = [
        {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": _ts(30)}
        for t, r, m in conditions
    ]
    return {
        "metadata": {"name": "f-1"},
        "status": {"startTime": _ts(0), "conditions": conds, **status},
    }


def _pod(
    phase: str, exit_code: int | None = None, message: str = "", at: int = 20
) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}}
    if exit_code is not None:
        state = {"terminated": {"exitCode": exit_code, "message": message, "finishedAt": _ts(at)}}
    return {"status": {"phase": phase, "containerStatuses": [{"name": "adf", "state": state}]}}


SUMMARY = {
    "rowsRead": 10,
    "rowsWritten": 8,
    "rowsSkipped": 2,
    "rowsFailed": 0,
    "cursorStart": None,
    "cursorEnd": ["2026-11-27T09:59:00", 42],
    "durationSeconds": 1.5,
    "error": None,
    "exitCode": 0,
    "flow": "shop/f",
}


def test_pending_then_running_and_never_back() -> None:
    pending = observe(LAUNCHED, _job(active=1), [_pod("Pending")], T0)
    assert pending.phase == "Pending"
    assert pending.start_time == T0
    assert pending.attempts == 1
    running = observe(pending, _job(active=1), [_pod("Running")], T0)
    assert running.phase == "Running"
    # a stale observation (pod list lagging) does not move the run back
    assert observe(running, _job(active=1), [], T0).phase == "Running"


def test_success_copies_the_summary() -> None:
    job = _job(("Complete", "", ""), succeeded=1, completionTime=_ts(25))
    done = observe(LAUNCHED, job, [_pod("Succeeded", 0, json.dumps(SUMMARY))], T0)
    assert done.phase == "Succeeded"
    assert (done.rows_read, done.rows_written, done.rows_skipped, done.rows_failed) == (10, 8, 2, 0)
    assert done.cursor_start is None
    assert done.cursor_end == '["2026-11-27T09:59:00",42]'
    assert done.completion_time == T0 + timedelta(seconds=25)
    assert done.duration == "25s"
    assert done.exit_code == 0
    assert done.message == "rows: 10 read, 8 written, 2 skipped, 0 failed"
    assert [(c.type, c.status) for c in done.conditions] == [("Complete", "True")]
    # final is final
    assert observe(done, None, [], T0 + timedelta(hours=1)) == done


def test_failure_takes_the_engine_message_masked() -> None:
    summary = {
        **SUMMARY,
        "error": "cannot connect to postgresql://app:hunter2@db/shop",
        "exitCode": 4,
    }
    job = _job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"))
    pods = [_pod("Failed", 4, "{}", at=5), _pod("Failed", 4, json.dumps(summary), at=15)]
    failed = observe(LAUNCHED, job, pods, T0)
    assert failed.phase == "Failed"
    assert failed.message == "cannot connect to postgresql://app:***@db/shop"
    assert failed.exit_code == 4
    assert failed.attempts == 2
    assert [(c.type, c.reason) for c in failed.conditions] == [("Failed", "BackoffLimitExceeded")]


def test_failure_without_summary_uses_log_tail_or_job_reason() -> None:
    job = _job(("Failed", "PodFailurePolicy", "Container adf exited with code 3"))
    logs = "Traceback (most recent call last):\n  ...\nKeyError: 'x'\n"
    assert observe(LAUNCHED, job, [_pod("Failed", 1, logs)], T0).message == "KeyError: 'x'"
    coded = observe(LAUNCHED, job, [_pod("Failed", 3, "")], T0)
    assert coded.message == "engine exited with code 3 (invalid spec)"
    deadline = _job(("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"))
    assert observe(LAUNCHED, deadline, [], T0).message == (
        "DeadlineExceeded: Job was active longer than specified deadline"
    )


def test_vanished_job_fails_the_run_but_an_unlaunched_run_waits() -> None:
    gone = observe(LAUNCHED.model_copy(update={"phase": "Running"}), None, [], T0)
    assert gone.phase == "Failed"
    assert gone.message == "Job f-1 disappeared before the run finished"
    assert gone.conditions[-1].reason == "JobDeleted"
    fresh = DataFlowRunStatus()
    assert observe(fresh, None, [], T0) == fresh


def test_cancel_is_final_and_keeps_outcomes() -> None:
    cancelled = cancel(LAUNCHED, "replaced by run f-2", T0)
    assert (cancelled.phase, cancelled.message, cancelled.completion_time) == (
        "Cancelled",
        "replaced by run f-2",
        T0,
    )
    succeeded = LAUNCHED.model_copy(update={"phase": "Succeeded"})
    assert cancel(succeeded, "x", T0) == succeeded


def test_parse_summary_tolerates_garbage() -> None:
    assert parse_summary(5, "not json at all").error == "not json at all"
    assert parse_summary(5, "not json at all").exit_code == 5
    assert parse_summary(0, "").error is None


def test_mask_and_duration_helpers() -> None:
    assert mask_secrets("mysql+pymysql://u:p@ss@h/db and sqlite:////x.db") == (
        "mysql+pymysql://u:***@ss@h/db and sqlite:////x.db"
    )
    assert mask_secrets("postgresql://user@host/db") == "postgresql://user@host/db"
    assert format_duration(timedelta(hours=1, seconds=3)) == "1h3s"
    assert format_duration(timedelta(0)) == "0s"


def _finished(name: str, phase: str | None, minute: int) -> dict[str, Any]:
    status = {"phase": phase, "completionTime": f"2026-11-27T10:{minute:02d}:00Z"} if phase else {}
    return {
        "metadata": {"name": name, "creationTimestamp": "2026-11-27T09:00:00Z"},
        "status": status,
    }


def test_prune_keeps_the_newest_per_outcome_and_never_active_runs() -> None:
    runs = [
        _finished("s1", "Succeeded", 1),
        _finished("s2", "Succeeded", 2),
        _finished("s3", "Succeeded", 3),
        _finished("f1", "Failed", 4),
        _finished("c1", "Cancelled", 5),
        _finished("active", None, 0),
        _finished("running", "Running", 0),
    ]
    assert runs_to_prune(runs, successful_limit=2, failed_limit=1) == ["s1", "f1"]
    assert runs_to_prune(runs, successful_limit=0, failed_limit=0) == ["s1", "s2", "s3", "f1", "c1"]
    assert runs_to_prune(runs, successful_limit=5, failed_limit=5) == []


def test_only_events_that_can_change_a_run_are_followed() -> None:
    assert not job_event_matters("MODIFIED", _job(active=1))
    assert job_event_matters("MODIFIED", _job(("Complete", "", "")))
    assert job_event_matters("MODIFIED", _job(("Failed", "DeadlineExceeded", "")))
    assert job_event_matters("DELETED", _job(active=1))
    assert not pod_event_matters("ADDED", _pod("Pending"))
    assert pod_event_matters("MODIFIED", _pod("Running"))
    assert pod_event_matters("MODIFIED", _pod("Failed", 4))
    assert pod_event_matters("DELETED", _pod("Pending"))


def test_a_stuck_pod_says_why_while_the_run_is_pending() -> None:
    stuck = {
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": "adf",
                    "state": {
                        "waiting": {
                            "reason": "CreateContainerConfigError",
                            "message": 'secret "shop-db" not found',
                        }
                    },
                }
            ],
        }
    }
    pending = observe(LAUNCHED, _job(active=1), [stuck], T0)
    assert pending.phase == "Pending"
    assert pending.message == 'CreateContainerConfigError: secret "shop-db" not found'
    assert pod_event_matters("MODIFIED", stuck)
    creating = {
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {"name": "adf", "state": {"waiting": {"reason": "ContainerCreating"}}}
            ],
        }
    }
    assert observe(LAUNCHED, _job(active=1), [creating], T0).message is None
    assert not pod_event_matters("MODIFIED", creating)
    running = observe(pending, _job(active=1), [_pod("Running")], T0)
    assert (running.phase, running.message) == ("Running", None)
