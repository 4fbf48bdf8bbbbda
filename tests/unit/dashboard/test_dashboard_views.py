"""The dashboard's views: schedules in words, masking, run rows, the SVG chart, the OpenAPI doc."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

import pytest

from adf_operator.dashboard import chart, openapi, views

FLOW: dict[str, Any] = {
    "metadata": {"name": "product-sync", "namespace": "shop", "generation": 2},
    "spec": {
        "source": {
            "sql": {
                "url": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
                "table": "products",
                "cursor": {"column": "updated_at", "tieBreaker": "id"},
            }
        },
        "transform": [{"rename": {"id": "product_id"}}],
        "sink": {
            "sql": {
                "url": {"value": "postgresql+psycopg://etl:hunter2@db:5432/warehouse"},
                "table": "product_exports",
                "mode": "upsert",
                "keys": ["product_id"],
            }
        },
        "schedule": {"cron": "*/5 * * * *", "timeZone": "Europe/Berlin"},
        "runTemplate": {
            "env": [
                {"name": "DB_PASSWORD", "value": "s3cret"},
                {"name": "LOG_LEVEL", "value": "debug"},
            ]
        },
    },
    "status": {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Valid",
                "message": "the spec is valid",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
        "lastRunName": "product-sync-29000000",
        "lastRunPhase": "Running",
        "lastRunTime": "2026-01-01T10:00:00Z",
        "lastError": "connect to postgresql://etl:hunter2@db/warehouse failed",
        "nextRunTime": "2026-01-01T10:05:00Z",
    },
}


def run(name: str, phase: str | None, created: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created},
        "spec": {"dataFlowRef": {"name": "product-sync"}, "trigger": "manual"},
        "status": {"phase": phase, **status} if phase else {},
    }


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        ({"cron": "*/5 * * * *", "timeZone": "Europe/Berlin"}, "Every 5 minutes (Europe/Berlin)"),
        ({"cron": "0 3 * * 1-5"}, "At 03:00 AM, Monday through Friday (UTC)"),
        ({"every": "10m"}, "Every 10 minutes"),
        ({"every": "1h"}, "Every 1 hour"),
        ({"every": "90s"}, "Every 90 seconds"),
        (None, "Manual only"),
    ],
)
def test_schedule_in_words(schedule: dict[str, str] | None, words: str) -> None:
    assert views.schedule_words(schedule) == words


def test_summary_uses_the_last_runs_counts_and_masks_the_error() -> None:
    last = run(
        "product-sync-29000000", "Succeeded", "2026-01-01T10:00:00Z", rowsRead=50, rowsWritten=48
    )
    summary = views.flow_summary(FLOW, {"product-sync-29000000": last})
    assert summary.last_run is not None
    assert (summary.last_run.phase, summary.last_run.rows_read) == ("Succeeded", 50)
    assert summary.last_run.rows_written == 48
    assert summary.ready is True
    assert summary.schedule == "Every 5 minutes (Europe/Berlin)"
    assert summary.last_error == "connect to postgresql://etl:***@db/warehouse failed"


def test_detail_keeps_secret_references_and_masks_literal_secrets() -> None:
    detail = views.flow_detail(FLOW, {})
    dumped = str(detail.model_dump(by_alias=True))
    assert "hunter2" not in dumped and "s3cret" not in dumped
    assert detail.spec["source"]["sql"]["url"] == {
        "secretKeyRef": {"name": "shop-db", "key": "url"}
    }
    assert detail.spec["sink"]["sql"]["url"]["value"] == (
        "postgresql+psycopg://etl:***@db:5432/warehouse"
    )
    env = detail.spec["runTemplate"]["env"]
    assert env == [
        {"name": "DB_PASSWORD", "value": "***"},
        {"name": "LOG_LEVEL", "value": "debug"},
    ]
    assert FLOW["spec"]["runTemplate"]["env"][0]["value"] == "s3cret"  # the input is untouched


def test_spec_outline_reads_like_a_sentence() -> None:
    outline = dict(views.spec_outline(FLOW["spec"]))
    assert outline["Source"] == (
        "SQL: table products, incremental on updated_at (tie-breaker id), batches of 1000"
    )
    assert outline["Source database"] == "from Secret shop-db, key url"
    assert outline["Sink database"] == "postgresql+psycopg://etl:***@db:5432/warehouse"
    assert outline["Sink"] == "SQL: table product_exports, mode upsert on product_id"
    assert outline["Transform"] == "rename id → product_id"


def test_runs_newest_first_with_duration_and_purge_candidates() -> None:
    runs = [
        run(
            "a",
            "Succeeded",
            "2026-01-01T10:00:00Z",
            startTime="2026-01-01T10:00:05Z",
            completionTime="2026-01-01T10:01:15Z",
        ),
        run("b", "Running", "2026-01-01T10:05:00Z"),
        run("c", "Failed", "2026-01-01T09:55:00Z"),
        {
            **run("other", "Failed", "2026-01-01T09:00:00Z"),
            "spec": {"dataFlowRef": {"name": "another-flow"}},
        },
    ]
    mine = views.runs_of("product-sync", runs)
    assert [r["metadata"]["name"] for r in mine] == ["b", "a", "c"]
    assert views.run_view(mine[1]).duration_seconds == 70.0
    assert views.finished(mine) == ["a", "c"]


@pytest.mark.parametrize(
    ("phase", "shown"), [(None, True), ("Running", True), ("Failed", False), ("None", False)]
)
def test_phase_filter(phase: str | None, shown: bool) -> None:
    summary = views.flow_summary(FLOW, {})
    assert views.matches_phase(summary, phase) is shown


def test_relative_times() -> None:
    now = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert views.relative("2026-01-01T09:55:00Z", now) == "5 min ago"
    assert views.relative("2026-01-01T12:30:00Z", now) == "in 2 h 30 min"
    assert views.relative("2025-12-30T08:00:00Z", now) == "2 d 2 h ago"
    assert views.relative("2099-01-01T00:00:00Z", now) == "in 73.0 years"
    assert views.relative(None, now) == ""


def test_pod_and_job_views() -> None:
    pod = {
        "metadata": {"name": "r-abc"},
        "spec": {"nodeName": "adf-devnode"},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {"restartCount": 1, "state": {"terminated": {"reason": "Error", "exitCode": 4}}}
            ],
        },
    }
    view = views.pod_view(pod)
    assert (view.state, view.exit_code, view.restarts) == ("terminated Error", 4, 1)
    job = views.job_view({"metadata": {"name": "r"}, "status": {"failed": 2}})
    assert (job.name, job.failed, job.active) == ("r", 2, 0)


def test_chart_is_valid_svg_with_one_bar_per_run_and_escaped_titles() -> None:
    runs = [
        views.RunView(
            namespace="shop",
            name=f"r<{i}>",
            flow="f",
            phase=phase,
            rows_written=rows,
            duration_seconds=secs,
        )
        for i, (phase, rows, secs) in enumerate(
            [("Succeeded", 100, 12.0), ("Failed", 0, 3.0), ("Running", None, None)]
        )
    ]
    svg = ElementTree.fromstring(str(chart.runs_chart(runs)))
    ns = "{http://www.w3.org/2000/svg}"
    bars = svg.findall(f"{ns}rect")
    assert len(bars) == 3
    assert [b.get("class") for b in bars] == ["bar busy", "bar bad", "bar ok"]  # oldest left
    titles = [b.find(f"{ns}title") for b in bars]
    assert titles[2] is not None and titles[2].text == "r<0>: Succeeded, 100 rows written, 12 s"
    assert str(chart.runs_chart([])) == ""


def test_openapi_document_lists_every_route_and_resolves_its_refs() -> None:
    doc = openapi.document(read_only_open=False)
    assert set(doc["paths"]) == {
        "/api/v1/dataflows",
        "/api/v1/dataflows/{namespace}/{name}",
        "/api/v1/dataflows/{namespace}/{name}/runs",
        "/api/v1/dataflows/{namespace}/{name}/run",
        "/api/v1/dataflows/{namespace}/{name}/suspend",
        "/api/v1/dataflows/{namespace}/{name}/resume",
        "/api/v1/dataflows/{namespace}/{name}/purge",
    }
    schemas = doc["components"]["schemas"]
    refs = {
        response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for path in doc["paths"].values()
        for operation in path.values()
        for response in operation["responses"].values()
    }
    assert refs <= set(schemas)
    assert "lastRun" in schemas["FlowSummary"]["properties"]
    assert doc["paths"]["/api/v1/dataflows"]["get"]["security"] == [{"bearer": []}]
    opened = openapi.document(read_only_open=True)
    assert opened["paths"]["/api/v1/dataflows"]["get"]["security"] == [{}]
    assert opened["paths"]["/api/v1/dataflows/{namespace}/{name}/run"]["post"]["security"] == [
        {"bearer": []}
    ]
