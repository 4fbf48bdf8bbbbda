"""Prometheus metrics of the heartbeat, in a registry of their own (one per app, so tests and
several apps in one process never share counters)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from adf_operator.heartbeat.due import PingResult

PING_RESULTS = (
    "ok",
    "unauthorized",
    "forbidden",
    "rate_limited",
    "bad_request",
    "payload_too_large",
    "error",
)
FLOW_OUTCOMES = ("due", "triggered", "skipped", "failed")
AUTH_REASONS = ("missing", "invalid")


class Metrics:
    """Pings by result, flows by outcome, auth failures by reason, and ping latency."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.pings = Counter(
            "adf_heartbeat_pings",
            "Heartbeat pings answered, by result.",
            ["result"],
            registry=self.registry,
        )
        self.flows = Counter(
            "adf_heartbeat_flows",
            "DataFlows seen by pings, by outcome (due, triggered, skipped, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "adf_heartbeat_auth_failures",
            "Pings refused for a missing or invalid token.",
            ["reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "adf_heartbeat_ping_duration_seconds",
            "Time to answer an authenticated ping (list, decide, patch).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )
        for result in PING_RESULTS:  # export zeros, so rates work from the first scrape
            self.pings.labels(result)
        for outcome in FLOW_OUTCOMES:
            self.flows.labels(outcome)
        for reason in AUTH_REASONS:
            self.auth_failures.labels(reason)

    def record_flows(self, result: PingResult) -> None:
        for outcome, count in zip(
            FLOW_OUTCOMES,
            (result.due, result.triggered, result.skipped, result.failed),
            strict=True,
        ):
            self.flows.labels(outcome).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
