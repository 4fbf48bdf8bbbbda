"""Prometheus metrics of the operator, and the /metrics endpoint it serves.

The operator's handlers call the methods of :data:`METRICS` where things happen (a run created, a
run finished, a handler failed, a flow's conditions set); :func:`serve_from_env` starts the
endpoint on ``$ADF_METRICS_PORT`` (off when unset). The metrics live in a registry of their own, so
tests and several instances in one process never share counters.

Label cardinality is bounded by the number of flows: per-flow labels on counters and on the run
duration histogram, none on the trigger-lag histogram (a fleet-wide health signal).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.exposition import generate_latest

from adf_operator.models import FINAL_PHASES, DataFlowRunStatus

PORT_ENV = "ADF_METRICS_PORT"
ADDR_ENV = "ADF_METRICS_ADDR"
ROW_KINDS = ("read", "written", "skipped", "failed")
CONDITION_STATUSES = ("True", "False", "Unknown")
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600)
LAG_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 90, 120, 300, 600)


class OperatorMetrics:
    """Runs started and finished, run durations, rows, trigger lag, reconcile errors, and the
    current conditions of each flow."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        flow = ["namespace", "flow"]
        self.runs_started = Counter(
            "adf_runs_started",
            "DataFlowRuns created by the operator, by flow and trigger (schedule, manual).",
            [*flow, "trigger"],
            registry=self.registry,
        )
        self.runs_finished = Counter(
            "adf_runs_finished",
            "DataFlowRuns that reached a final phase, by flow and phase.",
            [*flow, "phase"],
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "adf_run_duration_seconds",
            "Duration of finished runs (Job start to completion), by flow.",
            flow,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.rows = Counter(
            "adf_rows",
            "Rows handled by finished runs, by flow and kind (read, written, skipped, failed).",
            [*flow, "kind"],
            registry=self.registry,
        )
        self.trigger_lag = Histogram(
            "adf_trigger_lag_seconds",
            "Time from a schedule slot to the creation of its DataFlowRun.",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "adf_reconcile_errors",
            "Handler failures that kopf retries, by resource and reason.",
            ["resource", "reason"],
            registry=self.registry,
        )
        self.flow_condition = Gauge(
            "adf_flow_condition",
            "1 for the current status of each condition of each DataFlow, else 0 "
            "(sum by (condition, status) counts flows by condition).",
            [*flow, "condition", "status"],
            registry=self.registry,
        )
        self._conditions: dict[tuple[str, str], set[str]] = {}

    def run_created(
        self, namespace: str, flow: str, trigger: str, slot: datetime | None, at: datetime
    ) -> None:
        """A run was created; for a scheduled slot, also how late after the slot."""
        self.runs_started.labels(namespace, flow, trigger).inc()
        if slot is not None:
            self.trigger_lag.observe(max(0.0, (at - slot).total_seconds()))

    def run_finished(self, namespace: str, flow: str, status: DataFlowRunStatus) -> None:
        """A run reached a final phase (call once per run: on the phase change)."""
        phase = status.phase or "Unknown"
        if phase not in FINAL_PHASES:
            return
        self.runs_finished.labels(namespace, flow, phase).inc()
        if status.start_time and status.completion_time:
            seconds = (status.completion_time - status.start_time).total_seconds()
            self.run_duration.labels(namespace, flow).observe(max(0.0, seconds))
        counts = (status.rows_read, status.rows_written, status.rows_skipped, status.rows_failed)
        for kind, count in zip(ROW_KINDS, counts, strict=True):
            self.rows.labels(namespace, flow, kind).inc(count or 0)

    def reconcile_error(self, resource: str, reason: str) -> None:
        self.reconcile_errors.labels(resource, reason).inc()

    def flow_conditions(
        self, namespace: str, flow: str, conditions: Sequence[Mapping[str, Any]]
    ) -> None:
        """Record a flow's conditions (camelCase dicts as in its status)."""
        seen = self._conditions.setdefault((namespace, flow), set())
        for condition in conditions:
            kind, current = str(condition.get("type")), str(condition.get("status"))
            seen.add(kind)
            for status in CONDITION_STATUSES:
                self.flow_condition.labels(namespace, flow, kind, status).set(
                    1 if status == current else 0
                )

    def forget_flow(self, namespace: str, flow: str) -> None:
        """Drop a deleted flow's condition series (counters stay: they are history)."""
        for kind in self._conditions.pop((namespace, flow), set()):
            for status in CONDITION_STATUSES:
                self.flow_condition.remove(namespace, flow, kind, status)

    def render(self) -> bytes:
        return generate_latest(self.registry)


METRICS = OperatorMetrics()


def serve_from_env(
    environ: Mapping[str, str] | None = None, metrics: OperatorMetrics = METRICS
) -> WSGIServer | None:
    """Serve /metrics on $ADF_METRICS_PORT (address $ADF_METRICS_ADDR, default 0.0.0.0) in a
    daemon thread; returns the server (``server_port``, ``shutdown()``), or None when the
    variable is unset or empty."""
    env = os.environ if environ is None else environ
    text = env.get(PORT_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"{PORT_ENV}: must be a port number (0-65535), got {text!r}")
    server, _ = start_http_server(
        int(text), addr=env.get(ADDR_ENV) or "0.0.0.0", registry=metrics.registry
    )
    return server
