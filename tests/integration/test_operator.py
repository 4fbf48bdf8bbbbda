"""The operator on the real control plane: runs as Jobs whose pods the pod runner executes.

Flows move rows between SQLite files in the test's tmp dir (the pod runner runs pods as local
processes, so `sqlite:////abs/path` works); URLs come from Secrets, python transforms from
ConfigMaps, exactly as on a cluster. Blocking runs use a transform that waits for a gate file.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kopf.testing import KopfRunner
from prometheus_client.parser import text_string_to_metric_families

from adf_operator.metrics import METRICS
from devcluster.pytest_plugin import Kubectl, KubectlError, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "product-sync.yaml"
SHOP_FLOWS = ROOT / "examples" / "flows" / "shop_flows.py"
FLOW = "product-sync"
PRODUCTS = 20  # ids 7 and 14 are inactive
ACTIVE = 18
Obj = dict[str, Any]


@pytest.fixture
def shop(tmp_path: Path, kubectl: Kubectl, namespace: str) -> Path:
    """A source database with products, an empty warehouse, their Secrets and the ConfigMaps."""
    with sqlite3.connect(tmp_path / "shop.db") as db:
        db.execute(
            "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, sku TEXT, price NUMERIC,"
            " category TEXT, active BOOLEAN, updated_at TEXT)"
        )
        db.executemany(
            "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    i,
                    f" Product {i} ",
                    f"sku-{i}",
                    10 + i,
                    "tools",
                    i % 7 != 0,
                    f"2024-01-01 00:00:{i:02d}",
                )
                for i in range(1, PRODUCTS + 1)
            ],
        )
    for secret, db_file in (("shop-db", "shop.db"), ("warehouse-db", "warehouse.db")):
        url = f"sqlite:///{tmp_path / db_file}"
        kubectl.run(
            "create", "secret", "generic", secret, f"--from-literal=url={url}", "-n", namespace
        )
    kubectl.run("create", "configmap", "shop-flows", f"--from-file={SHOP_FLOWS}", "-n", namespace)
    gate = tmp_path / "gate"
    module = tmp_path / "gate_flows.py"
    module.write_text(
        "import pathlib, time\n\n"
        f"GATE = pathlib.Path({str(gate)!r})\n\n\n"
        "def hold(row):\n"
        "    deadline = time.monotonic() + 120\n"
        "    while not GATE.exists() and time.monotonic() < deadline:\n"
        "        time.sleep(0.05)\n"
        "    return row\n"
    )
    kubectl.run("create", "configmap", "gate", f"--from-file={module}", "-n", namespace)
    return tmp_path


@pytest.fixture
def operator(namespace: str) -> Iterator[KopfRunner]:
    """The operator in this process, watching only the test's namespace."""
    args = ["run", "--standalone", "-m", "adf_operator.handlers", "--namespace", namespace]
    with KopfRunner(args, timeout=60) as runner:
        yield runner
    assert runner.exception is None, runner.output


def flow_manifest(**spec: Any) -> Obj:
    manifest: Obj = yaml.safe_load(EXAMPLE.read_text())
    manifest["spec"].update(spec)
    return manifest


def gated(**spec: Any) -> Obj:
    """A flow whose run blocks until the gate file exists."""
    return flow_manifest(
        transform=[{"python": {"callable": "gate_flows:hold", "configMap": "gate"}}],
        sink={
            "sql": {
                "url": {"secretKeyRef": {"name": "warehouse-db", "key": "url"}},
                "table": "gated",
                "mode": "append",
            }
        },
        **spec,
    )


def get(kubectl: Kubectl, ns: str, *what: str) -> Obj:
    return kubectl.get(*what, "-n", ns)


def runs_of(kubectl: Kubectl, ns: str) -> list[Obj]:
    items: list[Obj] = get(kubectl, ns, "dataflowruns")["items"]
    return items


def wait_phase(kubectl: Kubectl, ns: str, run: str, *phases: str, timeout: float = 90) -> Obj:
    def phase() -> Obj | None:
        obj = get(kubectl, ns, "dataflowrun", run)
        return obj if obj.get("status", {}).get("phase") in phases else None

    return wait_for(phase, timeout=timeout, what=f"run {run} to be {'/'.join(phases)}")


def only_run(kubectl: Kubectl, ns: str) -> Obj:
    items = wait_for(lambda: runs_of(kubectl, ns), timeout=60, what="a DataFlowRun")
    assert len(items) == 1, [r["metadata"]["name"] for r in items]
    return items[0]


def events(kubectl: Kubectl, ns: str, reason: str) -> list[Obj]:
    items: list[Obj] = get(kubectl, ns, "events")["items"]
    return [e for e in items if e["reason"] == reason]


def adf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("adf")), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def schedule(kubectl: Kubectl, ns: str, slot: datetime, missed: int = 0) -> None:
    """What the heartbeat does for a due flow."""
    kubectl.run(
        "annotate",
        "--overwrite",
        "-n",
        ns,
        "dataflow",
        FLOW,
        f"activedataflow.io/scheduled-time={slot:%Y-%m-%dT%H:%M:%SZ}",
        f"activedataflow.io/missed-slots={missed}",
    )


def recent_slot(minutes_ago: int = 0) -> datetime:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=minutes_ago)


def run_name(slot: datetime) -> str:
    return f"{FLOW}-{int(slot.timestamp()) // 60}"


def exported(tmp_path: Path, table: str = "product_exports") -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp_path / "warehouse.db") as db:
        return db.execute(f"SELECT product_id, sku, gross_cents FROM {table} ORDER BY 1").fetchall()


# --- runs ----------------------------------------------------------------------------------------


def test_run_now_moves_the_rows_and_reports_them(
    kubectl: Kubectl, namespace: str, shop: Path, operator: KopfRunner
) -> None:
    kubectl.apply(flow_manifest(), namespace)
    ready = wait_for(
        lambda: get(kubectl, namespace, "dataflow", FLOW).get("status", {}).get("nextRunTime"),
        what="nextRunTime",
    )
    assert datetime.fromisoformat(ready) > datetime.now(UTC)

    triggered = adf("trigger", FLOW, "-n", namespace)
    assert triggered.returncode == 0, triggered.stderr
    run = only_run(kubectl, namespace)
    name = run["metadata"]["name"]
    assert name in triggered.stdout
    done = wait_phase(kubectl, namespace, name, "Succeeded", "Failed")
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert (status["rowsRead"], status["rowsWritten"], status["rowsFailed"]) == (ACTIVE, ACTIVE, 0)
    assert status["cursorEnd"] and status["attempts"] == 1 and status["duration"].endswith("s")
    assert done["spec"]["trigger"] == "manual"

    rows = exported(shop)
    assert len(rows) == ACTIVE
    assert rows[0] == (1, "SKU-1", 1309)  # the ConfigMap transform ran: 11 * 1.19 in cents
    assert 7 not in {r[0] for r in rows}

    flow = get(kubectl, namespace, "dataflow", FLOW)
    assert flow["status"]["lastRunName"] == name
    assert flow["status"]["lastRunPhase"] == "Succeeded"
    assert flow["status"]["cursor"] == status["cursorEnd"]
    assert "activedataflow.io/run-now" not in flow["metadata"].get("annotations", {})

    table = kubectl.run("get", "dataflowruns", "-n", namespace)
    header, line = table.splitlines()[:2]
    assert header.split() == ["NAME", "FLOW", "PHASE", "ROWS", "STARTED", "DURATION", "AGE"]
    assert line.split()[:4] == [name, FLOW, "Succeeded", str(ACTIVE)]
    flows_table = kubectl.run("get", "dataflows", "-n", namespace).splitlines()
    assert flows_table[0].split() == [
        "NAME",
        "SCHEDULE",
        "SUSPEND",
        "LAST",
        "RUN",
        "LAST",
        "STATUS",
        "NEXT",
        "RUN",
        "AGE",
    ]
    assert "every 10m" in flows_table[1] and "Succeeded" in flows_table[1]
    assert "<invalid>" not in flows_table[1]

    listing = adf("runs", FLOW, "-n", namespace)
    assert listing.returncode == 0 and name in listing.stdout and "Succeeded" in listing.stdout

    # The operator runs in this process (KopfRunner): its metrics counted this run.
    samples = {
        (s.name, s.labels.get("trigger") or s.labels.get("phase") or s.labels.get("kind")): s.value
        for family in text_string_to_metric_families(METRICS.render().decode())
        for s in family.samples
        if s.labels.get("namespace") == namespace
    }
    assert samples[("adf_runs_started_total", "manual")] == 1
    assert samples[("adf_runs_finished_total", "Succeeded")] == 1
    assert samples[("adf_rows_total", "written")] == ACTIVE


def test_scheduled_slot_runs_once_and_records_missed_slots(
    kubectl: Kubectl, namespace: str, shop: Path, operator: KopfRunner
) -> None:
    kubectl.apply(flow_manifest(), namespace)
    slot = recent_slot()
    schedule(kubectl, namespace, slot, missed=2)
    done = wait_phase(kubectl, namespace, run_name(slot), "Succeeded")
    assert done["spec"] == {
        "dataFlowRef": {"name": FLOW},
        "trigger": "schedule",
        "scheduledTime": f"{slot:%Y-%m-%dT%H:%M:%SZ}",
    }
    status = get(kubectl, namespace, "dataflow", FLOW)["status"]
    assert status["lastScheduleTime"] == f"{slot:%Y-%m-%dT%H:%M:%SZ}"
    assert status["missedSlots"] == 2
    assert datetime.fromisoformat(status["nextRunTime"]) > slot
    warned = wait_for(lambda: events(kubectl, namespace, "MissedSlots"), what="MissedSlots event")
    assert warned[0]["type"] == "Warning" and "2 schedule slot(s)" in warned[0]["message"]

    # The heartbeat patching the same slot again (a second ping) changes nothing. A spec change
    # made after it is a barrier: the operator handles one flow's events in order.
    schedule(kubectl, namespace, slot, missed=2)
    kubectl.run("patch", "-n", namespace, "dataflow", FLOW, "--type=merge",
                "-p", '{"spec": {"successfulRunsHistoryLimit": 4}}')  # fmt: skip

    def reconciled() -> bool:
        flow = get(kubectl, namespace, "dataflow", FLOW)
        return bool(flow["status"].get("observedGeneration") == flow["metadata"]["generation"])

    wait_for(reconciled, what="the operator to handle the later change")
    assert [r["metadata"]["name"] for r in runs_of(kubectl, namespace)] == [run_name(slot)]


def test_failing_flow_ends_failed_with_its_message_and_no_secret(
    kubectl: Kubectl, namespace: str, shop: Path, operator: KopfRunner
) -> None:
    kubectl.run(
        "create",
        "secret",
        "generic",
        "remote-db",
        "-n",
        namespace,
        "--from-literal=url=postgresql+psycopg://app:s3cret-pw@127.0.0.1:1/shop",
    )
    manifest = flow_manifest(runTemplate={"backoffLimit": 0})
    manifest["spec"]["sink"]["sql"]["url"] = {"secretKeyRef": {"name": "remote-db", "key": "url"}}
    kubectl.apply(manifest, namespace)
    assert adf("trigger", FLOW, "-n", namespace).returncode == 0
    name = only_run(kubectl, namespace)["metadata"]["name"]
    failed = wait_phase(kubectl, namespace, name, "Failed", "Succeeded")["status"]
    assert failed["phase"] == "Failed"
    assert failed["exitCode"] == 4
    assert failed["message"] and "s3cret-pw" not in failed["message"]
    assert [c["type"] for c in failed["conditions"]] == ["Failed"]
    warning = wait_for(
        lambda: [
            e
            for e in events(kubectl, namespace, "Failed")
            if e["involvedObject"]["kind"] == "DataFlowRun"
        ],
        what="a Warning event on the run",
    )
    assert warning[0]["type"] == "Warning"
    flow = wait_for(
        lambda: get(kubectl, namespace, "dataflow", FLOW)["status"].get("lastError"),
        what="the flow's lastError",
    )
    assert flow.startswith(name) and "s3cret-pw" not in flow
    assert "s3cret-pw" not in json.dumps(get(kubectl, namespace, "events"))


def test_missing_table_fails_naming_it(
    kubectl: Kubectl, namespace: str, shop: Path, operator: KopfRunner
) -> None:
    manifest = flow_manifest(runTemplate={"backoffLimit": 0})
    manifest["spec"]["source"]["sql"]["table"] = "no_such_table"
    kubectl.apply(manifest, namespace)
    adf("trigger", FLOW, "-n", namespace)
    name = only_run(kubectl, namespace)["metadata"]["name"]
    failed = wait_phase(kubectl, namespace, name, "Failed", "Succeeded")["status"]
    assert failed["phase"] == "Failed" and "no_such_table" in failed["message"]
    assert failed["exitCode"] == 4


def test_missing_secret_keeps_the_run_pending_and_says_why(
    kubectl: Kubectl, namespace: str, shop: Path, operator: KopfRunner
) -> None:
    manifest = flow_manifest()
    manifest["spec"]["sink"]["sql"]["url"] = {"secretKeyRef": {"name": "missing-db", "key": "url"}}
    kubectl.apply(manifest, namespace)
    adf("trigger", FLOW, "-n", namespace)
    name = only_run(kubectl, namespace)["metadata"]["name"]

    def explained() -> Obj | None:
        status = get(kubectl, namespace, "dataflowrun", name).get("status", {})
        return status if "missing-db" in (status.get("message") or "") else None

    status = wait_for(explained, timeout=60, what="the run to say why its pod is stuck")
    assert status["phase"] == "Pending"
    assert status["message"].startswith("CreateContainerConfigError")


def test_job_refused_by_the_api_server_fails_the_run(
    kubectl: Kubectl, namespace: str, shop: Path, operator: KopfRunner
) -> None:
    kubectl.apply(
        flow_manifest(runTemplate={"resources": {"limits": {"memory": "lots"}}}), namespace
    )
    adf("trigger", FLOW, "-n", namespace)
    name = only_run(kubectl, namespace)["metadata"]["name"]
    failed = wait_phase(kubectl, namespace, name, "Failed", "Succeeded")["status"]
    assert failed["conditions"][-1]["reason"] == "InvalidJob"
    assert "spec.runTemplate was refused" in failed["message"]
    assert "quantities must match" in failed["message"]  # the API server's reason
    assert not kubectl.run("get", "jobs", "-n", namespace, "-o", "name")


# --- scheduling policies -------------------------------------------------------------------------


def test_suspended_flow_skips_slots(
    kubectl: Kubectl, namespace: str, shop: Path, operator: KopfRunner
) -> None:
    kubectl.apply(flow_manifest(suspend=True), namespace)
    slot = recent_slot()
    schedule(kubectl, namespace, slot)
    skipped = wait_for(lambda: events(kubectl, namespace, "SlotSkipped"), what="SlotSkipped")
    assert "suspended" in skipped[0]["message"]
    status = get(kubectl, namespace, "dataflow", FLOW)["status"]
    assert status.get("nextRunTime") is None
    assert {c["type"]: c["status"] for c in status["conditions"]}["Suspended"] == "True"
    assert runs_of(kubectl, namespace) == []


def test_forbid_skips_a_slot_while_a_run_is_active(
    kubectl: Kubectl, namespace: str, shop: Path, operator: KopfRunner
) -> None:
    kubectl.apply(gated(concurrencyPolicy="Forbid"), namespace)
    first, second = recent_slot(2), recent_slot(1)
    schedule(kubectl, namespace, first)
    wait_phase(kubectl, namespace, run_name(first), "Running")
    schedule(kubectl, namespace, second)
    forbid = wait_for(lambda: events(kubectl, namespace, "ConcurrencyForbid"), what="Forbid event")
    assert run_name(first) in forbid[0]["message"]
    assert [r["metadata"]["name"] for r in runs_of(kubectl, namespace)] == [run_name(first)]
    (shop / "gate").touch()
    assert (
        wait_phase(kubectl, namespace, run_name(first), "Succeeded")["status"]["rowsWritten"] == 18
    )


def test_replace_cancels_the_active_run(
    kubectl: Kubectl, namespace: str, shop: Path, operator: KopfRunner
) -> None:
    kubectl.apply(gated(concurrencyPolicy="Replace"), namespace)
    first, second = recent_slot(2), recent_slot(1)
    schedule(kubectl, namespace, first)
    wait_phase(kubectl, namespace, run_name(first), "Running")
    schedule(kubectl, namespace, second)
    cancelled = wait_phase(kubectl, namespace, run_name(first), "Cancelled")["status"]
    assert run_name(second) in cancelled["message"]
    wait_for(
        lambda: (
            not kubectl.run("get", "job", run_name(first), "-n", namespace, "--ignore-not-found")
        ),
        what="the cancelled run's Job to be deleted",
    )
    wait_phase(kubectl, namespace, run_name(second), "Running")
    (shop / "gate").touch()
    assert wait_phase(kubectl, namespace, run_name(second), "Succeeded")["status"]["rowsRead"] == 18


def test_vanished_job_fails_the_run(
    kubectl: Kubectl, namespace: str, shop: Path, operator: KopfRunner
) -> None:
    kubectl.apply(gated(), namespace)
    slot = recent_slot()
    schedule(kubectl, namespace, slot)
    name = run_name(slot)
    wait_phase(kubectl, namespace, name, "Running")
    kubectl.run("delete", "job", name, "-n", namespace, "--wait=false")
    failed = wait_phase(kubectl, namespace, name, "Failed", timeout=60)["status"]
    assert failed["conditions"][-1]["reason"] == "JobDeleted"
    assert "disappeared" in failed["message"]


# --- history and deletion ------------------------------------------------------------------------


def test_history_is_pruned_to_the_limits(
    kubectl: Kubectl, namespace: str, shop: Path, operator: KopfRunner
) -> None:
    kubectl.apply(flow_manifest(successfulRunsHistoryLimit=1), namespace)
    names = []
    for _ in range(3):
        assert adf("trigger", FLOW, "-n", namespace).returncode == 0
        name = wait_for(
            lambda: [r for r in runs_of(kubectl, namespace) if r["metadata"]["name"] not in names],
            what="the next run",
        )[0]["metadata"]["name"]
        names.append(name)
        wait_phase(kubectl, namespace, name, "Succeeded")
    wait_for(
        lambda: [r["metadata"]["name"] for r in runs_of(kubectl, namespace)] == [names[-1]],
        what="older runs to be pruned",
    )
    wait_for(
        lambda: (
            kubectl.run("get", "jobs", "-n", namespace, "-o", "name").split()
            == [f"job.batch/{names[-1]}"]
        ),
        what="the pruned runs' Jobs to be deleted",
    )


def test_user_created_run_is_adopted_and_deleting_the_flow_cascades(
    kubectl: Kubectl, namespace: str, shop: Path, operator: KopfRunner
) -> None:
    kubectl.apply(flow_manifest(), namespace)
    run = {
        "apiVersion": "activedataflow.io/v1alpha1",
        "kind": "DataFlowRun",
        "metadata": {"name": "by-hand"},
        "spec": {
            "dataFlowRef": {"name": FLOW},
            "trigger": "backfill",
            "window": {"from": "2024-01-01 00:00:05", "to": "2024-01-01 00:00:10"},
        },
    }
    kubectl.apply(run, namespace)
    done = wait_phase(kubectl, namespace, "by-hand", "Succeeded")
    assert done["status"]["rowsWritten"] == 4  # ids 5..9 without the inactive 7
    assert done["metadata"]["labels"]["activedataflow.io/flow"] == FLOW
    assert done["metadata"]["ownerReferences"][0]["kind"] == "DataFlow"
    assert get(kubectl, namespace, "dataflow", FLOW)["status"].get("cursor") is None

    kubectl.run("delete", "dataflow", FLOW, "-n", namespace)
    wait_for(lambda: runs_of(kubectl, namespace) == [], what="runs to be garbage-collected")
    wait_for(
        lambda: not kubectl.run("get", "jobs,pods", "-n", namespace, "-o", "name"),
        what="Jobs and pods to be garbage-collected",
    )


# --- bad input -----------------------------------------------------------------------------------

BAD = {
    "upsert without keys": (
        {"sink": {"sql": {"url": {"value": "sqlite://"}, "table": "t", "mode": "upsert"}}},
        "spec.sink.sql.keys",
    ),
    "table and query": (
        {"source": {"sql": {"url": {"value": "sqlite://"}, "table": "t", "query": "SELECT 1"}}},
        "spec.source.sql",
    ),
    "every and cron": ({"schedule": {"every": "10m", "cron": "* * * * *"}}, "spec.schedule"),
    "unknown policy": ({"concurrencyPolicy": "Sometimes"}, "spec.concurrencyPolicy"),
    "two steps in one": (
        {"transform": [{"rename": {"a": "b"}, "drop": ["c"]}]},
        "spec.transform[0]",
    ),
    "bad table name": (
        {"sink": {"sql": {"url": {"value": "sqlite://"}, "table": "x; drop", "mode": "append"}}},
        "spec.sink.sql.table",
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_invalid_manifests_are_refused_naming_the_field(
    kubectl: Kubectl, namespace: str, case: str
) -> None:
    change, field = BAD[case]
    with pytest.raises(KubectlError) as refused:
        kubectl.apply(flow_manifest(**change), namespace)
    assert field in refused.value.stderr
    too_long = flow_manifest()
    too_long["metadata"]["name"] = "x" * 53
    with pytest.raises(KubectlError, match=r"metadata\.name must be at most 52"):
        kubectl.apply(too_long, namespace)


def test_flow_invalid_beyond_the_schema_is_not_ready_and_never_runs(
    kubectl: Kubectl, namespace: str, shop: Path, operator: KopfRunner
) -> None:
    kubectl.apply(flow_manifest(schedule={"every": "30s"}), namespace)

    def ready() -> Obj | None:
        conditions = get(kubectl, namespace, "dataflow", FLOW).get("status", {}).get("conditions")
        return next((c for c in conditions or [] if c["type"] == "Ready"), None)

    condition = wait_for(ready, what="the Ready condition")
    assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
    assert "spec.schedule.every" in condition["message"]
    adf("trigger", FLOW, "-n", namespace)
    wait_for(lambda: events(kubectl, namespace, "RunNowRefused"), what="RunNowRefused")
    assert runs_of(kubectl, namespace) == []


# --- restart safety ------------------------------------------------------------------------------


def _start_operator(namespace: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ADF_FOLLOW_INTERVAL": "5"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "adf_operator", "-n", namespace, "--log-format", "plain"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def test_killed_operator_restarts_without_a_second_run(
    kubectl: Kubectl, namespace: str, shop: Path, tmp_path: Path
) -> None:
    kubectl.apply(gated(), namespace)
    log = tmp_path / "operator.log"
    procs = [_start_operator(namespace, log)]
    try:
        slot = recent_slot()
        schedule(kubectl, namespace, slot)
        wait_phase(kubectl, namespace, run_name(slot), "Running")
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=10)
        schedule(kubectl, namespace, slot)  # a ping while the operator is down
        procs.append(_start_operator(namespace, log))
        (shop / "gate").touch()
        done = wait_phase(kubectl, namespace, run_name(slot), "Succeeded")
        assert done["status"]["rowsWritten"] == 18
        assert [r["metadata"]["name"] for r in runs_of(kubectl, namespace)] == [run_name(slot)]
        status = wait_for(
            lambda: (
                (s := get(kubectl, namespace, "dataflow", FLOW)["status"]).get("lastRunPhase")
                == "Succeeded"
                and s
            ),
            what="the flow's status to record the run",
        )
        assert status["lastScheduleTime"] == f"{slot:%Y-%m-%dT%H:%M:%SZ}"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
