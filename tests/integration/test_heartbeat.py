"""The heartbeat on the real control plane, with the real operator (kopf) creating the runs.

The heartbeat under test is the real app with the real Kubernetes store, served over HTTP on
127.0.0.1; only its clock is set by the test, so a slot is due without waiting for the wall clock.
The last test runs `adf heartbeat serve` and `adf heartbeat ping` as processes, on real time.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner

from adf_operator import names
from adf_operator.heartbeat.app import Settings, create_app
from adf_operator.heartbeat.kube import KubeFlowStore
from adf_operator.heartbeat.security import TokenSource
from adf_operator.schedule import format_time, parse_time
from devcluster.controlplane import ControlPlane
from devcluster.pytest_plugin import Kubectl
from tests.unit.heartbeat.heartbeat_support import serving

pytestmark = pytest.mark.integration

TOKEN = "integration-heartbeat-token"
NEVER_DUE = {"cron": "0 0 29 2 *"}  # 29 February only: not due between creation and a ping


@dataclass
class Clock:
    """The heartbeat's idea of now, set by the test."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Heartbeat:
    url: str
    clock: Clock

    def ping(self, token: str = TOKEN) -> tuple[int, dict[str, Any]]:
        return post(self.url + "/heartbeat", token)


def post(url: str, token: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=b"{}", method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def minute(instant: datetime) -> datetime:
    return instant.replace(second=0, microsecond=0)


def flow_manifest(name: str, schedule: dict[str, str] | None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {"sql": {"url": {"value": "sqlite:////nonexistent/src.db"}, "table": "items"}},
        "sink": {"sql": {"url": {"value": "sqlite:////nonexistent/dst.db"}, "table": "items"}},
        **spec,
    }
    if schedule is not None:
        body["schedule"] = schedule
    return {
        "apiVersion": "activedataflow.io/v1alpha1",
        "kind": "DataFlow",
        "metadata": {"name": name},
        "spec": body,
    }


def get_flow(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return kubectl.get("dataflow", name, "-n", namespace)


def marks(flow: dict[str, Any]) -> dict[str, str]:
    annotations = flow["metadata"].get("annotations") or {}
    return {k: v for k, v in annotations.items() if k in (names.SCHEDULED_TIME, names.MISSED_SLOTS)}


def run_names(kubectl: Kubectl, namespace: str) -> list[str]:
    runs = kubectl.get("dataflowruns", "-n", namespace)["items"]
    return sorted(run["metadata"]["name"] for run in runs)


def created_at(kubectl: Kubectl, namespace: str, name: str) -> datetime:
    return parse_time(get_flow(kubectl, namespace, name)["metadata"]["creationTimestamp"])


def set_last_schedule_time(kubectl: Kubectl, namespace: str, name: str, when: datetime) -> None:
    patch = json.dumps({"status": {"lastScheduleTime": format_time(when)}})
    kubectl.run(
        "patch",
        "dataflow",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    )


@pytest.fixture
def heartbeat(control_plane: ControlPlane, namespace: str) -> Iterator[Heartbeat]:
    """The heartbeat app on 127.0.0.1, watching the test's namespace; stopped afterwards."""
    clock = Clock(datetime.now(UTC))
    store = KubeFlowStore.connect([namespace], control_plane.kubeconfig_path)
    # answer_within=None: the reply waits for every patch, so the counts are exact (the budget
    # is unit-tested; the serve test below runs with the default one)
    settings = Settings(token=TokenSource(value=TOKEN), clock=clock, answer_within=None)
    app = create_app(store, settings)
    with serving(app) as base:
        yield Heartbeat(base, clock)


@pytest.fixture
def operator(control_plane: ControlPlane, namespace: str) -> Iterator[KopfRunner]:
    """The real operator for the test's namespace (kopf in a thread)."""
    args = ["run", "-m", "adf_operator.handlers", "--namespace", namespace, "--standalone"]
    with KopfRunner(args, timeout=60) as runner:
        yield runner


def apply_flows(kubectl: Kubectl, namespace: str, *manifests: dict[str, Any]) -> datetime:
    """Apply the flows; returns the latest creation time."""
    for manifest in manifests:
        kubectl.apply(manifest, namespace)
    return max(created_at(kubectl, namespace, m["metadata"]["name"]) for m in manifests)


def test_ping_triggers_exactly_the_due_flows(
    kubectl: Kubectl,
    namespace: str,
    heartbeat: Heartbeat,
    operator: KopfRunner,
    wait_for: Callable[..., Any],
) -> None:
    created = apply_flows(
        kubectl,
        namespace,
        flow_manifest("due-a", {"every": "1m"}),
        flow_manifest("due-b", {"cron": "* * * * *", "timeZone": "Europe/Berlin"}),
        flow_manifest("paused", {"every": "1m"}, suspend=True),
        flow_manifest("later", NEVER_DUE),
        flow_manifest("manual", None),
    )
    heartbeat.clock.now = minute(created) + timedelta(minutes=3, seconds=5)
    slot = minute(heartbeat.clock.now)

    status, reply = heartbeat.ping()

    assert status == 200
    assert (reply["flowsDue"], reply["flowsTriggered"], reply["flowsSkipped"]) == (3, 2, 1)
    assert (reply["flowsFailed"], reply["timestamp"]) == (0, format_time(heartbeat.clock.now))
    for name in ("due-a", "due-b"):
        flow = get_flow(kubectl, namespace, name)
        created_minute = minute(parse_time(flow["metadata"]["creationTimestamp"]))
        missed = (slot - created_minute) // timedelta(minutes=1) - 1  # slots after creation
        assert marks(flow) == {
            names.SCHEDULED_TIME: format_time(slot),
            names.MISSED_SLOTS: str(missed),
        }
    for name in ("paused", "later", "manual"):
        assert marks(get_flow(kubectl, namespace, name)) == {}
    minutes = int(slot.timestamp()) // 60
    want = [f"due-a-{minutes}", f"due-b-{minutes}"]
    wait_for(lambda: run_names(kubectl, namespace) == want, timeout=60, what=f"runs {want}")
    for name in ("due-a", "due-b"):
        wait_for(
            lambda n=name: (
                get_flow(kubectl, namespace, n)["status"].get("lastScheduleTime")
                == format_time(slot)
            ),
            timeout=30,
            what=f"{name}'s lastScheduleTime",
        )
    assert run_names(kubectl, namespace) == want


def test_twenty_concurrent_pings_create_one_run_per_slot(
    kubectl: Kubectl,
    namespace: str,
    heartbeat: Heartbeat,
    operator: KopfRunner,
    wait_for: Callable[..., Any],
) -> None:
    flows = [f"flow-{i}" for i in range(4)]
    created = apply_flows(kubectl, namespace, *(flow_manifest(n, {"every": "1m"}) for n in flows))
    heartbeat.clock.now = minute(created) + timedelta(minutes=2, seconds=1)
    slot = minute(heartbeat.clock.now)

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda _: heartbeat.ping(), range(20)))

    assert [status for status, _ in replies] == [200] * 20
    assert sum(reply["flowsTriggered"] for _, reply in replies) == len(flows)
    # Once the operator records a slot, later pings find nothing due: every reply adds up.
    for _, reply in replies:
        assert reply["flowsDue"] == reply["flowsTriggered"] + reply["flowsSkipped"]
        assert reply["flowsFailed"] == 0
    minutes = int(slot.timestamp()) // 60
    want = sorted(f"{n}-{minutes}" for n in flows)
    wait_for(lambda: run_names(kubectl, namespace) == want, timeout=60, what=f"runs {want}")
    for name in flows:  # every slot handled: later pings cannot add a run for it
        wait_for(
            lambda n=name: (
                get_flow(kubectl, namespace, n)["status"].get("lastScheduleTime")
                == format_time(slot)
            ),
            timeout=30,
            what=f"{name}'s lastScheduleTime",
        )
    with ThreadPoolExecutor(20) as pool:
        again = list(pool.map(lambda _: heartbeat.ping(), range(20)))
    assert sum(reply["flowsTriggered"] for _, reply in again) == 0
    assert run_names(kubectl, namespace) == want


def test_bad_token_changes_nothing(kubectl: Kubectl, namespace: str, heartbeat: Heartbeat) -> None:
    created = apply_flows(kubectl, namespace, flow_manifest("due", {"every": "1m"}))
    heartbeat.clock.now = minute(created) + timedelta(minutes=2)
    before = get_flow(kubectl, namespace, "due")["metadata"]["resourceVersion"]

    status, reply = heartbeat.ping(token=TOKEN + "-wrong")

    assert (status, reply["error"]["code"]) == (401, "unauthorized")
    after = get_flow(kubectl, namespace, "due")
    assert after["metadata"]["resourceVersion"] == before
    assert marks(after) == {}
    assert run_names(kubectl, namespace) == []


def test_after_downtime_only_the_latest_slot_runs_and_the_missed_count_shows(
    kubectl: Kubectl,
    namespace: str,
    heartbeat: Heartbeat,
    operator: KopfRunner,
    wait_for: Callable[..., Any],
) -> None:
    apply_flows(kubectl, namespace, flow_manifest("sync", {"every": "1m"}))
    wait_for(  # let the operator write its first status, then move the last slot back an hour
        lambda: get_flow(kubectl, namespace, "sync").get("status", {}).get("conditions"),
        timeout=30,
        what="the operator's first status",
    )
    heartbeat.clock.now = datetime.now(UTC)
    slot = minute(heartbeat.clock.now)
    set_last_schedule_time(kubectl, namespace, "sync", slot - timedelta(hours=1))

    status, reply = heartbeat.ping()

    assert (status, reply["flowsTriggered"]) == (200, 1)
    assert marks(get_flow(kubectl, namespace, "sync")) == {
        names.SCHEDULED_TIME: format_time(slot),
        names.MISSED_SLOTS: "59",
    }
    want = [f"sync-{int(slot.timestamp()) // 60}"]
    wait_for(lambda: run_names(kubectl, namespace) == want, timeout=60, what=f"run {want}")
    flow_status = wait_for(
        lambda: (
            (s := get_flow(kubectl, namespace, "sync")["status"]).get("missedSlots") == 59 and s
        ),
        timeout=30,
        what="status.missedSlots",
    )
    assert flow_status["lastScheduleTime"] == format_time(slot)
    events = kubectl.get(
        "events", "-n", namespace, "--field-selector", "involvedObject.name=sync,reason=MissedSlots"
    )["items"]
    assert [e["type"] for e in events] == ["Warning"]
    assert "59 schedule slot(s)" in events[0]["message"]
    assert run_names(kubectl, namespace) == want


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_and_ping_commands(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
    wait_for: Callable[..., Any],
) -> None:
    """`adf heartbeat serve` as a process, pinged by `adf heartbeat ping`, on real time."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    apply_flows(kubectl, namespace, flow_manifest("sync", {"every": "1m"}))
    set_last_schedule_time(
        kubectl, namespace, "sync", minute(datetime.now(UTC)) - timedelta(minutes=5)
    )
    port = free_port()
    adf = str(Path(sys.executable).with_name("adf"))
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig_path)}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [
            adf,
            "heartbeat",
            "serve",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--token-file={token_file}",
            f"--namespace={namespace}",
            "--allow-cidr=127.0.0.0/8",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            with urllib.request.urlopen(base + "/readyz", timeout=5) as response:
                return bool(response.status == 200)

        wait_for(ready, timeout=30, what="the heartbeat's /readyz")
        ping = subprocess.run(
            [adf, "heartbeat", "ping", f"--url={base}/heartbeat", f"--token-file={token_file}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ping.returncode == 0, ping.stderr
        reply = json.loads(ping.stdout)
        assert (reply["flowsDue"], reply["flowsFailed"]) == (1, 0)
        assert reply["flowsTriggered"] + reply["flowsPending"] == 1
        slot = reply["timestamp"][:17] + "00Z"
        wait_for(
            lambda: marks(get_flow(kubectl, namespace, "sync")).get(names.SCHEDULED_TIME) == slot,
            timeout=30,
            what=f"the mark {slot}",
        )
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert 'adf_heartbeat_flows_total{outcome="due"} 1.0' in metrics
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()
    assert TOKEN not in (tmp_path / "serve.log").read_text()
