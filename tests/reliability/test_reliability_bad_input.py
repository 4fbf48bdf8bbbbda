"""Malformed DataFlows and DataFlowRuns, table-driven: each is refused by `kubectl apply` with a
message naming the field, or accepted and then surfaced by the operator (Ready=False on a flow, a
Failed run) naming it. None creates a Job or stops the operator.

One test walks the whole table against one operator, so the operator sees every bad object one
after the other, as it would on a busy cluster.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest

from adf_operator import names
from devcluster.pytest_plugin import Kubectl, KubectlError, wait_for
from soak.report import Recorder, Trial
from tests.reliability.harness import OperatorProcess, flow_status, jobs, phase, runs, stuck

pytestmark = pytest.mark.integration

Obj = dict[str, Any]
DELETE = object()
GOOD_FLOW = "good-flow"


def base_flow(name: str = "bad-flow") -> Obj:
    return {
        "apiVersion": names.API,
        "kind": "DataFlow",
        "metadata": {"name": name},
        "spec": {
            "source": {"sql": {"url": {"value": "sqlite:////nonexistent/a.db"}, "table": "items"}},
            "sink": {
                "sql": {
                    "url": {"value": "sqlite:////nonexistent/b.db"},
                    "table": "items",
                    "mode": "append",
                }
            },
            "schedule": {"every": "10m"},
        },
    }


def base_run(name: str = "bad-run") -> Obj:
    return {
        "apiVersion": names.API,
        "kind": "DataFlowRun",
        "metadata": {"name": name},
        "spec": {"dataFlowRef": {"name": GOOD_FLOW}, "trigger": "manual"},
    }


def changed(body: Obj, **paths: Any) -> Obj:
    """A copy of `body` with values set at dotted paths (`__` for a dot; DELETE removes)."""
    result = copy.deepcopy(body)
    for dotted, value in paths.items():
        *parents, last = dotted.split("__")
        node = result
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return result


@dataclass(frozen=True)
class Case:
    """One malformed object and the field its refusal (or its status) must name."""

    body: Obj
    field: str
    outcome: str = "refused"  # or "not ready" (flow) / "run failed" (run)


def flow(field: str, outcome: str = "refused", **paths: Any) -> Case:
    return Case(changed(base_flow(), **paths), field, outcome)


def run(field: str, outcome: str = "refused", **paths: Any) -> Case:
    return Case(changed(base_run(), **paths), field, outcome)


SQL_SOURCE = "spec__source__sql"
SQL_SINK = "spec__sink__sql"
CASES: dict[str, Case] = {
    # missing fields
    "flow without spec": flow("spec", spec=DELETE),
    "flow without source": flow("spec.source", spec__source=DELETE),
    "flow without sink": flow("spec.sink", spec__sink=DELETE),
    "source without url": flow("spec.source.sql.url", **{f"{SQL_SOURCE}__url": DELETE}),
    "source with neither table nor query": flow(
        "spec.source.sql", **{f"{SQL_SOURCE}__table": DELETE}
    ),
    "sink without table": flow("spec.sink.sql.table", **{f"{SQL_SINK}__table": DELETE}),
    "url with neither value nor secret": flow("spec.source.sql.url", **{f"{SQL_SOURCE}__url": {}}),
    # wrong types
    "batchSize is text": flow(
        "spec.source.sql.batchSize", **{f"{SQL_SOURCE}__batchSize": "a thousand"}
    ),
    "suspend is text": flow("spec.suspend", spec__suspend="yes please"),
    "transform is a mapping": flow("spec.transform", spec__transform={"rename": {"a": "b"}}),
    "keys is a string": flow(
        "spec.sink.sql.keys", **{f"{SQL_SINK}__mode": "upsert", f"{SQL_SINK}__keys": "id"}
    ),
    "schedule is a string": flow("spec.schedule", spec__schedule="every 10 minutes"),
    # contradictory fields
    "table and query": flow("spec.source.sql", **{f"{SQL_SOURCE}__query": "SELECT 1"}),
    "query with where": flow(
        "spec.source.sql",
        **{
            f"{SQL_SOURCE}__table": DELETE,
            f"{SQL_SOURCE}__query": "SELECT 1",
            f"{SQL_SOURCE}__where": "x",
        },
    ),
    "value and secretKeyRef": flow(
        "spec.sink.sql.url",
        **{f"{SQL_SINK}__url__secretKeyRef": {"name": "db", "key": "url"}},
    ),
    "upsert without keys": flow("spec.sink.sql.keys", **{f"{SQL_SINK}__mode": "upsert"}),
    "skipUnchanged on append": flow("spec.sink.sql", **{f"{SQL_SINK}__skipUnchanged": True}),
    "every and cron": flow("spec.schedule", spec__schedule={"every": "10m", "cron": "* * * * *"}),
    "deadLetter without onError deadLetter": flow("spec", spec__deadLetter={"table": "dead_rows"}),
    "two steps in one transform": flow(
        "spec.transform[0]", spec__transform=[{"rename": {"a": "b"}, "drop": ["c"]}]
    ),
    # unknown connectors and values
    "unknown source connector": flow("spec.source", spec__source={"kafka": {"topic": "products"}}),
    "unknown sink connector": flow("spec.sink", spec__sink={"s3": {"bucket": "x"}}),
    "unknown transform step": flow("spec.transform[0]", spec__transform=[{"explode": "tags"}]),
    "unknown sink mode": flow("spec.sink.sql.mode", **{f"{SQL_SINK}__mode": "merge"}),
    "unknown concurrency policy": flow("spec.concurrencyPolicy", spec__concurrencyPolicy="Often"),
    "unknown onError": flow("spec.onError", spec__onError="ignore"),
    "duration without unit": flow("spec.schedule.every", spec__schedule={"every": "10"}),
    "cron with three fields": flow("spec.schedule", spec__schedule={"cron": "* * *"}),
    "unknown time zone": flow(
        "spec.schedule.timeZone",
        "not ready",
        spec__schedule={"cron": "0 * * * *", "timeZone": "Mars/Olympus_Mons"},
    ),
    "interval below a minute": flow(
        "spec.schedule.every", "not ready", spec__schedule={"every": "30s"}
    ),
    "python callable without module": flow(
        "spec.transform[0].python.callable",
        spec__transform=[{"python": {"callable": "to_export"}}],
    ),
    # huge and negative values
    "batchSize of a trillion": flow(
        "spec.source.sql.batchSize", **{f"{SQL_SOURCE}__batchSize": 10**12}
    ),
    "batchSize zero": flow("spec.source.sql.batchSize", **{f"{SQL_SOURCE}__batchSize": 0}),
    "negative startingDeadlineSeconds": flow(
        "spec.startingDeadlineSeconds", spec__startingDeadlineSeconds=-5
    ),
    "history limit of a million": flow(
        "spec.successfulRunsHistoryLimit", spec__successfulRunsHistoryLimit=10**6
    ),
    "backoffLimit of a hundred": flow(
        "spec.runTemplate.backoffLimit", spec__runTemplate={"backoffLimit": 100}
    ),
    "negative maxRowsPerRun": flow("spec.maxRowsPerRun", spec__maxRowsPerRun=-1),
    "secret name of 300 characters": flow(
        "spec.source.sql.url.secretKeyRef.name",
        **{f"{SQL_SOURCE}__url": {"secretKeyRef": {"name": "s" * 300, "key": "url"}}},
    ),
    # names and unicode
    "flow name too long for its Jobs": flow("metadata.name", metadata={"name": "f" * 53}),
    "flow name with unicode": flow("metadata.name", metadata={"name": "prödukt-sync"}),
    "table name with unicode and SQL": flow(
        "spec.sink.sql.table", **{f"{SQL_SINK}__table": "exports; DROP TABLE ü"}
    ),
    "cursor column with a space": flow(
        "spec.source.sql.cursor.column", **{f"{SQL_SOURCE}__cursor": {"column": "updated at"}}
    ),
    # runs
    "run without dataFlowRef": run("spec.dataFlowRef", spec__dataFlowRef=DELETE),
    "run with an empty flow name": run("spec.dataFlowRef.name", spec__dataFlowRef={"name": ""}),
    "run with an unknown trigger": run("spec.trigger", spec__trigger="whenever"),
    "run with a window but no backfill": run(
        "spec", spec__window={"from": "2024-01-01", "to": "2024-02-01"}
    ),
    "run with a scheduledTime that is no time": run(
        "spec.scheduledTime", spec__scheduledTime="yesterday"
    ),
    "run name too long for its Job": run("metadata.name", metadata={"name": "r" * 64}),
    "run with a unicode name": run("metadata.name", metadata={"name": "läuft"}),
    "run of a flow that does not exist": run(
        "no-such-flow", "run failed", spec__dataFlowRef={"name": "no-such-flow"}
    ),
}


def _condition(kubectl: Kubectl, namespace: str, flow_name: str) -> Obj | None:
    conditions = flow_status(kubectl, namespace, flow_name).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), None)


def _surfaced(kubectl: Kubectl, namespace: str, case: Case) -> str:
    """The operator's verdict on an accepted object: the message that must name the field."""
    name = case.body["metadata"]["name"]
    if case.outcome == "not ready":
        ready = wait_for(
            lambda: _condition(kubectl, namespace, name), timeout=60, what=f"{name}'s Ready"
        )
        assert ready["status"] == "False", ready
        return str(ready["message"])
    done = wait_for(
        lambda: next(
            (r for r in runs(kubectl, namespace) if r["metadata"]["name"] == name and phase(r)),
            None,
        ),
        timeout=60,
        what=f"{name}'s phase",
    )
    assert phase(done) == "Failed", done.get("status")
    return str(done["status"].get("message", ""))


def test_malformed_manifests_are_refused_or_surfaced_naming_the_field(
    kubectl: Kubectl, namespace: str, operator: OperatorProcess, report: Recorder
) -> None:
    assert len(CASES) >= 30
    kubectl.apply(changed(base_flow(GOOD_FLOW), spec__suspend=True), namespace)
    problems: list[str] = []
    for label, case in CASES.items():
        try:
            kubectl.apply(case.body, namespace)
        except KubectlError as refused:
            if case.outcome != "refused":
                problems.append(f"{label}: refused, expected {case.outcome}: {refused.stderr}")
            elif case.field not in refused.stderr:
                problems.append(
                    f"{label}: the refusal does not name {case.field}: {refused.stderr}"
                )
            continue
        if case.outcome == "refused":
            problems.append(f"{label}: accepted, expected a refusal naming {case.field}")
            kind = case.body["kind"].lower()
            kubectl.run("delete", kind, case.body["metadata"]["name"], "-n", namespace)
            continue
        message = _surfaced(kubectl, namespace, case)
        if case.field not in message:
            problems.append(f"{label}: the status does not name {case.field}: {message}")
        kubectl.run("delete", case.body["kind"].lower(), case.body["metadata"]["name"],
                    "-n", namespace)  # fmt: skip
    left_running = len(stuck(kubectl, namespace))
    for _ in CASES:
        report.add(Trial("malformed manifests", stuck_runs=left_running))
    assert not problems, "\n".join(problems)
    assert jobs(kubectl, namespace) == [], "a malformed object created a Job"
    assert operator.alive, operator.output()[-3000:]
    assert "Traceback" not in operator.output(), operator.output()[-3000:]
    # The operator still works: the good flow, resumed, gets Ready=True.
    kubectl.apply(base_flow(GOOD_FLOW), namespace)
    ready = wait_for(
        lambda: (c := _condition(kubectl, namespace, GOOD_FLOW)) and c["status"] == "True" and c,
        timeout=60,
        what="the good flow to be Ready",
    )
    assert ready["reason"]
