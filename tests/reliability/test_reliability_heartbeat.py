"""50 concurrent pings spread over two heartbeat replicas (`adf heartbeat serve` processes):
every due slot gets exactly one run, each run one pod, and the sinks hold every row once.

The flows are made due by setting their lastScheduleTime back (the control plane "was down"),
so the test needs no wall-clock wait for a schedule slot.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devcluster.pytest_plugin import Kubectl, wait_for
from soak.report import Recorder, Trial
from tests.integration.test_heartbeat import set_last_schedule_time
from tests.reliability.harness import (
    Databases,
    HeartbeatProcess,
    OperatorProcess,
    bearer,
    flow_manifest,
    flow_status,
    jobs,
    phase,
    post,
    runs,
    stuck,
    trials,
    trigger,
    wait_final,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

TOKEN = "reliability-heartbeat-token-0123456789"
FLOWS = 4
PINGS = 50
ROWS = 200


def all_succeeded(kubectl: Kubectl, namespace: str, want: set[str]) -> bool:
    phases = {r["metadata"]["name"]: phase(r) for r in runs(kubectl, namespace)}
    return all(phases.get(name) == "Succeeded" for name in want)


def warm_up(kubectl: Kubectl, namespace: str) -> None:
    """One run before the storm, so the sink's adf_state table exists: runs that create it at
    the same moment collide (see test_first_runs_on_a_fresh_sink_database_all_succeed)."""
    kubectl.apply(flow_manifest("warmup", table="warmup"), namespace)
    assert phase(wait_final(kubectl, namespace, trigger(kubectl, namespace, "warmup"))) == (
        "Succeeded"
    )


def test_first_runs_on_a_fresh_sink_database_all_succeed(
    kubectl: Kubectl, namespace: str, dbs: Databases, operator: OperatorProcess
) -> None:
    """Flows sharing a warehouse database whose first runs start at the same moment."""
    tables = [f"fresh_{i}" for i in range(FLOWS)]
    dbs.fill(ROWS, *tables)
    for i, table in enumerate(tables):
        kubectl.apply(flow_manifest(f"fresh-{i}", table=table), namespace)
    started = [trigger(kubectl, namespace, f"fresh-{i}") for i in range(FLOWS)]
    ended = [wait_final(kubectl, namespace, name) for name in started]
    assert [phase(r) for r in ended] == ["Succeeded"] * FLOWS, [r["status"] for r in ended]


@pytest.fixture
def replicas(namespace: str, tmp_path: Path) -> Iterator[list[HeartbeatProcess]]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    started = [
        HeartbeatProcess(namespace, token_file, tmp_path / f"heartbeat-{i}.log") for i in range(2)
    ]
    try:
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.stop()


def test_fifty_concurrent_pings_on_two_replicas_run_each_slot_once(
    kubectl: Kubectl,
    namespace: str,
    dbs: Databases,
    operator: OperatorProcess,
    replicas: list[HeartbeatProcess],
    report: Recorder,
) -> None:
    rounds = trials(short=1, long=5)
    tables = [f"out_{r}_{i}" for r in range(rounds) for i in range(FLOWS)]
    dbs.fill(ROWS, *tables, "warmup")
    warm_up(kubectl, namespace)
    for r in range(rounds):
        flows = [f"storm-{r}-{i}" for i in range(FLOWS)]
        for flow, table in zip(flows, tables[r * FLOWS :], strict=False):
            kubectl.apply(flow_manifest(flow, table=table, schedule={"every": "1m"}), namespace)
        for flow in flows:  # the operator's first status, then the last slot an hour back
            wait_for(lambda f=flow: flow_status(kubectl, namespace, f).get("conditions"))
        # Ping well inside one minute, so that every ping sees the same due slot.
        wait_for(lambda: datetime.now(UTC).second < 40, timeout=30, what="a fresh minute")
        slot = datetime.now(UTC).replace(second=0, microsecond=0)
        for flow in flows:
            set_last_schedule_time(kubectl, namespace, flow, slot - timedelta(hours=1))

        def ping(i: int) -> tuple[int, dict[str, object]]:
            return post(replicas[i % 2].url + "/heartbeat", headers=bearer(TOKEN))

        with ThreadPoolExecutor(PINGS) as pool:
            replies = list(pool.map(ping, range(PINGS)))

        assert [status for status, _ in replies] == [200] * PINGS, replies
        minute = int(slot.timestamp()) // 60
        want = {f"{flow}-{minute}" for flow in flows}
        wait_for(
            lambda w=want: all_succeeded(kubectl, namespace, w),
            timeout=180,
            what=f"the runs {sorted(want)} to succeed",
        )
        ours = [r["metadata"]["name"] for r in runs(kubectl, namespace)
                if r["spec"]["dataFlowRef"]["name"] in flows]  # fmt: skip
        assert sorted(ours) == sorted(want), "a slot ran twice or a ping made an extra run"
        compared = [dbs.compare(table) for table in tables[r * FLOWS : (r + 1) * FLOWS]]
        report.add(
            Trial(
                f"{PINGS} concurrent pings, 2 heartbeat replicas",
                rows_checked=sum(c.rows_checked for c in compared),
                lost=sum(c.lost for c in compared),
                duplicated=sum(c.duplicated for c in compared),
                stuck_runs=len(stuck(kubectl, namespace)),
            )
        )
        assert all(c.identical for c in compared), compared
        for flow in flows:
            assert flow_status(kubectl, namespace, flow)["missedSlots"] == 59

    for job in jobs(kubectl, namespace):
        assert (job["status"].get("succeeded", 0), job["status"].get("failed", 0)) == (1, 0)
    for replica in replicas:
        assert TOKEN not in replica.output()
        assert " 500 " not in replica.output()
