"""The control plane itself failing: kube-apiserver restarted under a running operator (its
watches must reconnect, not stall silently), and the whole control plane down for many schedule
intervals (afterwards the latest slot runs once, and status.missedSlots and a Warning event say
how many were missed).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devcluster.controlplane import ControlPlane, binary_paths, stop_group
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
    phase,
    post,
    runs,
    stuck,
    trials,
    trigger,
    wait_final,
)

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

TOKEN = "reliability-control-plane-token-1a2b3c4d"
ROWS = 200
MISSED = 29  # slots skipped while everything was down (every 1m, last slot 30 minutes back)


def restart_apiserver(control_plane: ControlPlane, down: float) -> None:
    """Stop kube-apiserver, keep it down for `down` seconds, start it again on the same port
    with the same etcd (data kept). ControlPlane has no public restart: its own launcher is used."""
    stop_group(control_plane.pids["kube-apiserver"])
    time.sleep(down)  # the outage itself
    control_plane._start_apiserver(
        binary_paths()["kube-apiserver"], control_plane.state_dir / "pki", timeout=120
    )


def wait_api(kubectl: Kubectl) -> None:
    wait_for(lambda: kubectl.run("get", "--raw=/readyz"), timeout=120, what="the API server")


def test_operator_carries_on_after_the_api_server_restarts(
    kubectl: Kubectl,
    namespace: str,
    control_plane: ControlPlane,
    dbs: Databases,
    operator: OperatorProcess,
    report: Recorder,
) -> None:
    restarts = trials(short=1, long=5)
    rng = random.Random(seed := random.randrange(1 << 30))
    dbs.fill(ROWS, "exports")
    kubectl.apply(flow_manifest("survivor"), namespace)
    assert phase(wait_final(kubectl, namespace, trigger(kubectl, namespace, "survivor"))) == (
        "Succeeded"
    )
    for restart in range(restarts):
        dbs.add_rows(ROWS * (restart + 1) + 1, ROWS * (restart + 2))
        restart_apiserver(control_plane, down=rng.uniform(1, 5))
        back = time.monotonic()
        wait_api(kubectl)
        # Triggered after the restart: only a live watch on the DataFlow turns this into a run.
        run = trigger(kubectl, namespace, "survivor")
        wait_for(
            lambda r=run: kubectl.run("get", "job", r, "-n", namespace, "--ignore-not-found"),
            timeout=120,
            what=f"the operator to create the Job of {run}",
        )
        recovery = time.monotonic() - back
        # The Job's pod comes from kube-controller-manager, whose watches back off for up to
        # ~80 s after repeated API server restarts: a slow pod here is not the operator's.
        done = wait_final(kubectl, namespace, run, timeout=300)
        assert phase(done) == "Succeeded", (restart, seed, done.get("status"))
        assert done["status"]["rowsRead"] == ROWS, done["status"]
        result = dbs.compare("exports")
        report.add(
            Trial(
                "API server restarted under the operator",
                rows_checked=result.rows_checked,
                lost=result.lost,
                duplicated=result.duplicated,
                stuck_runs=len(stuck(kubectl, namespace)),
                recovery_seconds=recovery,
                recovery_from="API server ready -> the operator created the run triggered then"
                " (its Job included)",
            )
        )
        assert result.identical, result
    assert operator.alive


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN)
    return path


@pytest.fixture
def stopped_operator(
    namespace: str, tmp_path: Path, control_plane: ControlPlane
) -> Iterator[OperatorProcess]:
    """The operator, not started yet (it is "down" with the rest)."""
    process = OperatorProcess(namespace, tmp_path / "operator.log")
    yield process
    process.stop()


def test_after_control_plane_downtime_only_the_latest_slot_runs_and_the_misses_show(
    kubectl: Kubectl,
    namespace: str,
    control_plane: ControlPlane,
    dbs: Databases,
    stopped_operator: OperatorProcess,
    token_file: Path,
    tmp_path: Path,
    report: Recorder,
) -> None:
    dbs.fill(ROWS, "exports")
    kubectl.apply(flow_manifest("hourly", schedule={"every": "1m"}), namespace)
    restart_apiserver(control_plane, down=2)
    wait_api(kubectl)
    stopped_operator.start()
    heartbeat = HeartbeatProcess(namespace, token_file, tmp_path / "heartbeat.log")
    try:
        heartbeat.wait_ready()
        # Down since half an hour: the last slot recorded is 30 minutes back. Pinged well inside
        # one minute, so every ping sees the same due slot.
        wait_for(lambda: datetime.now(UTC).second < 40, timeout=40, what="a fresh minute")
        slot = datetime.now(UTC).replace(second=0, microsecond=0)
        set_last_schedule_time(kubectl, namespace, "hourly", slot - timedelta(minutes=MISSED + 1))
        pinged = time.monotonic()
        for _ in range(3):  # the CronJob's ping, and two more from other pingers
            assert post(heartbeat.url + "/heartbeat", headers=bearer(TOKEN))[0] == 200
        name = f"hourly-{int(slot.timestamp()) // 60}"
        done = wait_final(kubectl, namespace, name, timeout=180)
        recovery = time.monotonic() - pinged
        assert phase(done) == "Succeeded", done.get("status")
        status = wait_for(
            lambda: (
                (s := flow_status(kubectl, namespace, "hourly")).get("missedSlots") == MISSED and s
            ),
            timeout=60,
            what="status.missedSlots",
        )
        assert status["lastScheduleTime"] == f"{slot:%Y-%m-%dT%H:%M:%SZ}"
    finally:
        heartbeat.stop()
    assert [r["metadata"]["name"] for r in runs(kubectl, namespace)] == [name]
    events = kubectl.get("events", "-n", namespace, "--field-selector",
                         "involvedObject.name=hourly,reason=MissedSlots")["items"]  # fmt: skip
    assert [e["type"] for e in events] == ["Warning"]
    assert f"{MISSED} schedule slot(s)" in events[0]["message"]
    result = dbs.compare("exports")
    report.add(
        Trial(
            f"control plane down {MISSED + 1} intervals",
            rows_checked=result.rows_checked,
            lost=result.lost,
            duplicated=result.duplicated,
            stuck_runs=len(stuck(kubectl, namespace)),
            recovery_seconds=recovery,
            recovery_from="first ping after the outage -> the latest slot's run succeeded",
        )
    )
    assert result.identical, result
