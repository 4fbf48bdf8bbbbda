"""Database faults: the sink server restarts in the middle of a run, the source server is down
when a run starts. Source and sink live on two servers, so each fault hits one side only.

The run that meets the fault fails with a clear message (no password in it) and never stays
Running; the next run succeeds and catches up; the sink ends equal to the source, nothing twice.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator

import pytest

from devcluster.pytest_plugin import Kubectl, wait_for
from soak.report import Recorder, Trial
from tests.reliability.harness import (
    Databases,
    OperatorProcess,
    check_prefix,
    flow_manifest,
    pg_ctl,
    running_pod,
    stuck,
    trials,
    trigger,
    wait_final,
)
from tests.support.postgres import LocalPostgres, start_local

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

FLOW = "db-faults"
ROWS = 3000
ROW_DELAY = 0.002


@pytest.fixture(scope="module")
def source_server(pg_server: LocalPostgres) -> Iterator[LocalPostgres]:
    """A second server for the source (pg_server holds the sink)."""
    server = start_local(durable=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def split_dbs(
    source_server: LocalPostgres, pg_server: LocalPostgres, kubectl: Kubectl, namespace: str
) -> Iterator[Databases]:
    names = (f"rel_src_{uuid.uuid4().hex[:8]}", f"rel_sink_{uuid.uuid4().hex[:8]}")
    source_server.create_database(names[0])
    pg_server.create_database(names[1])
    databases = Databases(source_server, names[0], pg_server, names[1], namespace)
    databases.create_secrets(kubectl)
    yield databases
    pg_ctl(source_server, "restart")  # up again whatever the test left
    source_server.drop_database(names[0])
    pg_server.drop_database(names[1])


def assert_clear_failure(run: dict[str, object], dbs: Databases, context: str) -> str:
    status = run["status"]
    assert isinstance(status, dict)
    assert status["phase"] == "Failed", (context, status)
    message = str(status.get("message", ""))
    assert message, f"{context}: a failed run says why"
    for url in dbs.urls.values():
        password = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
        assert password not in message, f"{context}: the password is in the message"
    return message


def test_sink_restarted_mid_run_then_the_next_run_catches_up(
    kubectl: Kubectl,
    namespace: str,
    split_dbs: Databases,
    pg_server: LocalPostgres,
    operator: OperatorProcess,
    report: Recorder,
) -> None:
    dbs = split_dbs
    restarts = trials(short=1, long=5)
    rows = ROWS
    dbs.fill(rows, "exports")
    expected = dbs.expected()
    kubectl.apply(flow_manifest(FLOW, row_delay=ROW_DELAY), namespace)
    rng = random.Random(seed := random.randrange(1 << 30))
    for restart in range(restarts):
        prefix = len(dbs.sink_rows("exports"))  # what earlier trials left: all rows so far
        context = f"sink restart {restart + 1}/{restarts} (seed {seed})"
        run = trigger(kubectl, namespace, FLOW)
        running_pod(kubectl, namespace, run)
        wait_for(
            lambda done=prefix: len(dbs.snapshot(FLOW, "exports")[1]) > done,
            timeout=120,
            what=f"a checkpoint of {run}",
        )
        time.sleep(rng.uniform(0, 0.3))
        restarted_at = time.monotonic()
        pg_ctl(pg_server, "restart")
        message = assert_clear_failure(wait_final(kubectl, namespace, run), dbs, context)
        watermark, sink = dbs.snapshot(FLOW, "exports")
        check_prefix(expected, watermark, sink)
        assert prefix < len(sink) < rows, f"{context}: {message}"
        prefix = len(sink)

        caught_up = trigger(kubectl, namespace, FLOW)
        done = wait_final(kubectl, namespace, caught_up, timeout=300)["status"]
        assert done["phase"] == "Succeeded", (context, done)
        assert done["rowsRead"] == rows - prefix
        result = dbs.compare("exports")
        report.add(
            Trial(
                "sink database restarted mid-run",
                rows_checked=result.rows_checked,
                lost=result.lost,
                duplicated=result.duplicated,
                stuck_runs=len(stuck(kubectl, namespace)),
                recovery_seconds=time.monotonic() - restarted_at,
                recovery_from="restart -> the next run caught up (Succeeded)",
            )
        )
        assert result.identical, (context, result)
        if restart + 1 < restarts:  # more rows for the next restart to interrupt
            dbs.add_rows(rows + 1, rows + ROWS)
            rows += ROWS
            expected = dbs.expected()


def test_source_down_at_start_fails_clearly_then_the_next_run_catches_up(
    kubectl: Kubectl,
    namespace: str,
    split_dbs: Databases,
    source_server: LocalPostgres,
    operator: OperatorProcess,
    report: Recorder,
) -> None:
    dbs = split_dbs
    outages = trials(short=1, long=5)
    dbs.fill(500, "exports")
    kubectl.apply(flow_manifest(FLOW), namespace)
    rows = 500
    for outage in range(outages):
        context = f"source outage {outage + 1}/{outages}"
        pg_ctl(source_server, "stop")
        stopped_at = time.monotonic()
        failed = wait_final(kubectl, namespace, trigger(kubectl, namespace, FLOW))
        message = assert_clear_failure(failed, dbs, context)
        assert failed["status"]["exitCode"] == 4, (context, failed["status"])  # connection
        assert "cannot connect to the source database" in message, message
        pg_ctl(source_server, "restart")
        done = wait_final(kubectl, namespace, trigger(kubectl, namespace, FLOW))["status"]
        assert done["phase"] == "Succeeded", (context, done)
        result = dbs.compare("exports")
        report.add(
            Trial(
                "source database down at start",
                rows_checked=result.rows_checked,
                lost=result.lost,
                duplicated=result.duplicated,
                stuck_runs=len(stuck(kubectl, namespace)),
                recovery_seconds=time.monotonic() - stopped_at,
                recovery_from="server stopped -> failed run, server back, next run succeeded",
            )
        )
        assert result.identical, (context, result)
        dbs.add_rows(rows + 1, rows + 200)
        rows += 200
