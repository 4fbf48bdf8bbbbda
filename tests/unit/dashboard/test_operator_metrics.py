"""The operator's Prometheus metrics: what each call records, and the endpoint it serves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from adf_operator.metrics import OperatorMetrics, serve_from_env
from adf_operator.models import DataFlowRunStatus

SLOT = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_runs_started_and_trigger_lag() -> None:
    metrics = OperatorMetrics()
    metrics.run_created("shop", "sync", "schedule", SLOT, SLOT + timedelta(seconds=7))
    metrics.run_created("shop", "sync", "manual", None, SLOT)
    assert (
        value(metrics, "adf_runs_started_total", namespace="shop", flow="sync", trigger="schedule")
        == 1
    )
    assert value(metrics, "adf_trigger_lag_seconds_count") == 1
    assert value(metrics, "adf_trigger_lag_seconds_sum") == 7
    assert value(metrics, "adf_trigger_lag_seconds_bucket", le="5.0") == 0
    assert value(metrics, "adf_trigger_lag_seconds_bucket", le="10.0") == 1


def test_finished_runs_count_phase_duration_and_rows() -> None:
    metrics = OperatorMetrics()
    done = DataFlowRunStatus(
        phase="Succeeded",
        start_time=SLOT,
        completion_time=SLOT + timedelta(seconds=90),
        rows_read=120,
        rows_written=118,
        rows_skipped=2,
        rows_failed=0,
    )
    metrics.run_finished("shop", "sync", done)
    metrics.run_finished("shop", "sync", DataFlowRunStatus(phase="Failed", rows_read=10))
    metrics.run_finished("shop", "sync", DataFlowRunStatus(phase="Running"))  # not final
    flow = {"namespace": "shop", "flow": "sync"}
    assert value(metrics, "adf_runs_finished_total", phase="Succeeded", **flow) == 1
    assert value(metrics, "adf_runs_finished_total", phase="Failed", **flow) == 1
    assert value(metrics, "adf_run_duration_seconds_sum", **flow) == 90
    assert value(metrics, "adf_run_duration_seconds_count", **flow) == 1
    assert value(metrics, "adf_rows_total", kind="read", **flow) == 130
    assert value(metrics, "adf_rows_total", kind="written", **flow) == 118
    assert value(metrics, "adf_rows_total", kind="skipped", **flow) == 2


def test_flow_conditions_are_one_hot_and_forgotten_with_the_flow() -> None:
    metrics = OperatorMetrics()
    metrics.flow_conditions("shop", "sync", [{"type": "Ready", "status": "False"}])
    metrics.flow_conditions("shop", "sync", [{"type": "Ready", "status": "True"}])
    ready = {"namespace": "shop", "flow": "sync", "condition": "Ready"}
    assert value(metrics, "adf_flow_condition", status="True", **ready) == 1
    assert value(metrics, "adf_flow_condition", status="False", **ready) == 0
    metrics.forget_flow("shop", "sync")
    assert value(metrics, "adf_flow_condition", status="True", **ready) is None


def test_served_on_the_port_from_the_environment() -> None:
    metrics = OperatorMetrics()
    metrics.reconcile_error("DataFlow", "api_409")
    assert serve_from_env({}, metrics) is None
    server = serve_from_env({"ADF_METRICS_PORT": "0", "ADF_METRICS_ADDR": "127.0.0.1"}, metrics)
    assert server is not None
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        text = requests.get(url, timeout=10).text
    finally:
        server.shutdown()
        server.server_close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["adf_reconcile_errors"].samples[0].value == 1
    with pytest.raises(ValueError, match="ADF_METRICS_PORT: must be a port number"):
        serve_from_env({"ADF_METRICS_PORT": "http"}, metrics)
