"""Status models of DataFlow and DataFlowRun: what the operator writes, and the CRD's status schema.

The spec models live in `adf_core.spec` (the engine validates manifests with them); the status is
the operator's own business, so its models live here. Both feed `adf_operator.crds`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from adf_core.spec import SpecModel

RunPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled"]
FINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed", "Cancelled"})


class Condition(SpecModel):
    """A condition as Kubernetes API conventions define it (metav1.Condition)."""

    type: str = Field(min_length=1, max_length=316, description="Type, e.g. Ready.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1, max_length=1024, description="CamelCase reason of the last transition."
    )
    message: str = Field(default="", max_length=32768, description="Human-readable details.")
    last_transition_time: datetime = Field(description="When the status last changed.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation the condition was set for."
    )


class DataFlowStatus(SpecModel):
    """What the operator observed and did for a DataFlow."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation last reconciled."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready (the spec is valid) and Suspended."
    )
    schedule: str | None = Field(
        default=None, description="The schedule in words, for `kubectl get` (e.g. every 10m)."
    )
    last_schedule_time: datetime | None = Field(
        default=None, description="The latest schedule slot the operator handled."
    )
    next_run_time: str | None = Field(
        default=None,
        description="The next schedule slot (RFC 3339, UTC); empty when suspended or unscheduled. "
        "A string, so `kubectl get` prints the time rather than <invalid>.",
    )
    missed_slots: int | None = Field(
        default=None, ge=0, description="Slots missed before the last scheduled one (downtime)."
    )
    last_run_name: str | None = Field(default=None, description="The most recent DataFlowRun.")
    last_run_time: datetime | None = Field(
        default=None, description="When the most recent DataFlowRun was created."
    )
    last_run_phase: str | None = Field(
        default=None, description="Phase of the most recent DataFlowRun."
    )
    last_successful_time: datetime | None = Field(
        default=None, description="When a run of this flow last succeeded."
    )
    last_error: str | None = Field(
        default=None, description="Message of the last failed run; cleared by a success."
    )
    cursor: str | None = Field(
        default=None,
        description="The watermark committed by the last successful run (a mirror for humans; "
        "the real one lives in the sink database).",
    )


class DataFlowRunStatus(SpecModel):
    """Progress and outcome of one run, copied from its Job, pod and the engine's summary."""

    phase: RunPhase | None = Field(
        default=None, description="Pending, Running, Succeeded, Failed or Cancelled."
    )
    job_name: str | None = Field(default=None, description="The Job that executes the run.")
    start_time: datetime | None = Field(default=None, description="When the Job started.")
    completion_time: datetime | None = Field(default=None, description="When the run ended.")
    duration: str | None = Field(
        default=None, description="How long the run took, e.g. 1m12s (set when it ends)."
    )
    attempts: int | None = Field(default=None, ge=0, description="Pods the Job has started.")
    rows_read: int | None = Field(default=None, ge=0, description="Rows read from the source.")
    rows_written: int | None = Field(default=None, ge=0, description="Rows written to the sink.")
    rows_skipped: int | None = Field(
        default=None,
        ge=0,
        description="Rows not written on purpose: unchanged (skipUnchanged) or dropped by a python "
        "step.",
    )
    rows_failed: int | None = Field(
        default=None, ge=0, description="Rows that failed (skipped or dead-lettered)."
    )
    cursor_start: str | None = Field(default=None, description="Watermark when the run began.")
    cursor_end: str | None = Field(default=None, description="Watermark when the run ended.")
    exit_code: int | None = Field(
        default=None,
        description="Exit code of the engine: 3 invalid spec, 4 connection or missing "
        "table/column/callable, 5 data failure.",
    )
    message: str | None = Field(default=None, description="Why the run ended as it did.")
    conditions: list[Condition] = Field(default_factory=list, description="Conditions (Complete).")
