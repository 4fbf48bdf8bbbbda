"""The operator SIGKILLed and restarted while runs are being created and while they run.

Every slot is marked on two flows (what the heartbeat does), then the operator is killed either at
once (the runs and Jobs are being created) or once the runs are Running; while it is down the slot
is marked again (a second ping). After the restart each slot has exactly one run per flow, each run
exactly one pod that succeeded, no run is left Running, the flows' status records the last slot,
and each sink equals the source row for row.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from adf_operator import names
from devcluster.pytest_plugin import Kubectl
from soak.report import Recorder, Trial
from tests.reliability.harness import (
    Databases,
    OperatorProcess,
    flow_manifest,
    flow_status,
    jobs,
    phase,
    runs,
    schedule,
    stuck,
    trials,
    wait_final,
    wait_phase,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

FLOWS = ("sync-a", "sync-b")
TABLES = {flow: flow.replace("-", "_") for flow in FLOWS}
ROWS_PER_SLOT = 300
ROW_DELAY = 0.005  # a run lasts a couple of seconds: long enough to be killed under


def test_operator_killed_while_creating_and_while_running_runs_each_slot_once(
    kubectl: Kubectl,
    namespace: str,
    dbs: Databases,
    operator: OperatorProcess,
    report: Recorder,
) -> None:
    slots = trials(short=3, long=20)
    rng = random.Random(seed := random.randrange(1 << 30))
    dbs.fill(0, *TABLES.values())
    for flow in FLOWS:
        kubectl.apply(
            flow_manifest(
                flow,
                table=TABLES[flow],
                row_delay=ROW_DELAY,
                successfulRunsHistoryLimit=1000,  # keep every run for the checks at the end
            ),
            namespace,
        )
    first = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=slots)
    expected_runs: set[str] = set()

    for k in range(slots):
        while_running = k % 2 == 1
        context = f"slot {k + 1}/{slots}, killed {'while running' if while_running else 'at once'}"
        dbs.add_rows(k * ROWS_PER_SLOT + 1, (k + 1) * ROWS_PER_SLOT)
        slot = first + timedelta(minutes=k)
        slot_runs = [schedule(kubectl, namespace, flow, slot) for flow in FLOWS]
        expected_runs.update(slot_runs)
        if while_running:
            for name in slot_runs:
                wait_phase(kubectl, namespace, name, "Running")
        else:
            time.sleep(rng.uniform(0, 0.5))  # somewhere in creating the runs and their Jobs
        killed_at = time.monotonic()
        operator.kill()
        for flow in FLOWS:  # a second ping for the same slot while the operator is down
            schedule(kubectl, namespace, flow, slot)
        time.sleep(rng.uniform(0, 2))  # down for a while
        operator.start()
        ended = [wait_final(kubectl, namespace, name, timeout=180) for name in slot_runs]
        recovery = time.monotonic() - killed_at
        assert [phase(r) for r in ended] == ["Succeeded"] * len(FLOWS), (context, seed, ended)
        compared = [dbs.compare(table) for table in TABLES.values()]
        report.add(
            Trial(
                "operator killed",
                rows_checked=sum(c.rows_checked for c in compared),
                lost=sum(c.lost for c in compared),
                duplicated=sum(c.duplicated for c in compared),
                stuck_runs=len(stuck(kubectl, namespace)),
                recovery_seconds=recovery,
                recovery_from="SIGKILL -> both runs of the slot Succeeded",
            )
        )
        for table, result in zip(TABLES.values(), compared, strict=True):
            assert result.identical, (context, table, result)

    assert {r["metadata"]["name"] for r in runs(kubectl, namespace)} == expected_runs
    assert stuck(kubectl, namespace) == []
    for job in jobs(kubectl, namespace):  # one pod per run, and it succeeded: no slot ran twice
        counts = (job["status"].get("succeeded", 0), job["status"].get("failed", 0))
        assert counts == (1, 0), (job["metadata"]["name"], job["status"])
    last = f"{first + timedelta(minutes=slots - 1):%Y-%m-%dT%H:%M:%SZ}"
    for flow in FLOWS:
        status = flow_status(kubectl, namespace, flow)
        assert status["lastScheduleTime"] == last, status
    assert names.RUN_NOW not in operator.output()  # nothing asked for a manual run
