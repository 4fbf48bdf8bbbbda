"""The whole stack as a user meets it: `helm install`, DataFlows applied with kubectl, the
heartbeat pinged the way the chart's CronJob pings it, rows in the sink, the dashboard and its API
looked at and used, `helm upgrade`, `helm uninstall`.

Everything is real: the chart's operator, heartbeat and run pods run as local processes under the
dev control plane's pod runner (with the chart's ServiceAccounts, so its RBAC is what lets them
work), the databases are a real PostgreSQL server and SQLite files.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adf_operator.names import LABEL_RUN
from devcluster.controlplane import binary_paths
from devcluster.pytest_plugin import Kubectl
from tests.support import products
from tests.support.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "active-data-flow"
ADF = Path(sys.executable).with_name("adf")
RELEASE = "e2e"
PREFIX = f"{RELEASE}-active-data-flow"
HEARTBEAT_PORT = 8080
SQLITE_ROWS = 40
PG_ROWS = 500

WaitFor = Callable[..., Any]


def helm(*args: str) -> str:
    proc = subprocess.run(
        [str(binary_paths()["helm"]), *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def table(kubectl: Kubectl, *args: str) -> list[dict[str, str]]:
    """`kubectl get` as a person reads it: one dict per row, keyed by the column headers."""
    lines = kubectl.run("get", *args).splitlines()
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=\s\s))\S", header)]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    names = [header[a:b].strip() for a, b in bounds]
    return [
        {n: line[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)}
        for line in lines[1:]
    ]


def dataflow(name: str, namespace: str, secret: str) -> dict[str, Any]:
    """A DataFlow that copies a products table every minute, URLs from a Secret."""
    return {
        "apiVersion": "activedataflow.io/v1alpha1",
        "kind": "DataFlow",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "source": {"sql": {"url": {"secretKeyRef": {"name": secret, "key": "source"}},
                               "table": "products", "batchSize": 100}},
            "transform": [{"rename": {"name": "title"}}],
            "sink": {"sql": {"url": {"secretKeyRef": {"name": secret, "key": "sink"}},
                             "table": "exports", "mode": "upsert", "keys": ["id"]}},
            "schedule": {"every": "1m"},
        },
    }  # fmt: skip


def secret(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": data,
    }


def runs_of(kubectl: Kubectl, namespace: str, flow: str) -> list[dict[str, Any]]:
    items = kubectl.get("dataflowruns", "-n", namespace)["items"]
    return [r for r in items if r["spec"]["dataFlowRef"]["name"] == flow]


def succeeded_runs(kubectl: Kubectl, namespace: str, flow: str) -> list[dict[str, Any]]:
    runs = runs_of(kubectl, namespace, flow)
    failed = [r for r in runs if r.get("status", {}).get("phase") == "Failed"]
    assert not failed, f"run failed: {failed[0]['status']}"
    return [r for r in runs if r.get("status", {}).get("phase") == "Succeeded"]


def wait_for_slot(kubectl: Kubectl, namespace: str, flows: list[str], wait_for: WaitFor) -> None:
    """Wait until the next schedule slot the operator announced (status.nextRunTime) has come."""

    def next_runs() -> list[datetime] | None:
        times = [
            kubectl.get("dataflow", name, "-n", namespace).get("status", {}).get("nextRunTime")
            for name in flows
        ]
        return None if not all(times) else [datetime.fromisoformat(t) for t in times]

    slot = max(wait_for(next_runs, timeout=60, what="status.nextRunTime of the flows"))
    wait_for(lambda: datetime.now(UTC) > slot, timeout=70, what=f"the slot {slot}")


def ping(url: str, token_file: Path) -> dict[str, Any]:
    """Exactly what the chart's CronJob runs."""
    proc = subprocess.run(
        [str(ADF), "heartbeat", "ping", f"--url={url}", f"--token-file={token_file}",
         "--retries=3", "--timeout=10"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reply: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return reply


def token_of(kubectl: Kubectl, namespace: str) -> str:
    data = kubectl.get("secret", f"{PREFIX}-heartbeat-token", "-n", namespace)["data"]
    return base64.b64decode(data["token"]).decode()


def pods(kubectl: Kubectl, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    args = ["-l", selector] if selector else []
    items: list[dict[str, Any]] = kubectl.get("pods", "-n", namespace, *args)["items"]
    return items


def uids(kubectl: Kubectl, namespace: str, selector: str) -> set[str]:
    return {p["metadata"]["uid"] for p in pods(kubectl, namespace, selector)}


def release_objects(kubectl: Kubectl, kind: str, namespace: str | None = None) -> list[Any]:
    """Objects of `kind` that carry the release's instance label."""
    where = ["-n", namespace] if namespace else []
    selector = f"app.kubernetes.io/instance={RELEASE}"
    items: list[Any] = kubectl.get(kind, *where, "-l", selector)["items"]
    return items


def heartbeat_url(kubectl: Kubectl, namespace: str, wait_for: WaitFor) -> str:
    """The heartbeat pod's own address (there is no cluster DNS), once it answers /readyz."""
    selector = "app.kubernetes.io/component=heartbeat"

    def address() -> str | None:
        running = [
            p for p in pods(kubectl, namespace, selector) if p["status"].get("phase") == "Running"
        ]  # fmt: skip
        return running[0]["status"].get("podIP") if len(running) == 1 else None

    base = f"http://{wait_for(address, timeout=60, what='the heartbeat pod')}:{HEARTBEAT_PORT}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as resp:
            return bool(resp.status == 200)

    wait_for(ready, timeout=60, what="the heartbeat's /readyz")
    return f"{base}/heartbeat"


def call(url: str, method: str = "GET", token: str | None = None) -> tuple[int, str]:
    """One request to the heartbeat: (status, body), errors included."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = b"" if method == "POST" else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def api(url: str, method: str = "GET", token: str | None = None) -> Any:
    status, body = call(url, method, token)
    assert status in (200, 202), f"{method} {url}: {status} {body}"
    return json.loads(body)


def use_dashboard(
    base: str, token: str, kubectl: Kubectl, namespace: str, flows: list[str]
) -> None:
    """The dashboard served by the chart's heartbeat, with nothing but the chart's RBAC: list flows
    and runs, open a run's page (its Job, pods and events), suspend and resume a flow."""
    listed = api(f"{base}/api/v1/dataflows?namespace={namespace}", token=token)
    assert sorted(f["name"] for f in listed["items"]) == flows
    [run] = api(f"{base}/api/v1/dataflows/{namespace}/{flows[0]}/runs", token=token)["items"]
    assert run["phase"] == "Succeeded"
    # Read-only pages are open in this release (heartbeat.dashboard.openReadOnly): no sign-in.
    status, page = call(f"{base}/dashboard/runs/{namespace}/{run['name']}")
    assert status == 200, page
    job = kubectl.get("dataflowrun", run["name"], "-n", namespace)["status"]["jobName"]
    assert f"<dt>Name</dt><dd>{job}</dd>" in page
    run_pods = kubectl.get("pods", "-n", namespace, "-l", f"{LABEL_RUN}={run['name']}")["items"]
    assert run_pods and all(p["metadata"]["name"] in page for p in run_pods)
    # Actions still need the token; with it, each is a change kubectl shows.
    flow_url = f"{base}/api/v1/dataflows/{namespace}/{flows[1]}"
    assert call(f"{flow_url}/suspend", "POST")[0] == 401
    for action, suspended in (("suspend", True), ("resume", False)):
        api(f"{flow_url}/{action}", "POST", token)
        shown = kubectl.get("dataflow", flows[1], "-n", namespace)["spec"].get("suspend", False)
        assert shown is suspended, action


# What the heartbeat's ServiceAccount may do in a watched namespace (RBAC as the API server
# judges it): what pings and the dashboard need, and nothing next to it.
HEARTBEAT_MAY = [
    ("get", "dataflows.activedataflow.io"), ("list", "dataflows.activedataflow.io"),
    ("patch", "dataflows.activedataflow.io"), ("list", "dataflowruns.activedataflow.io"),
    ("delete", "dataflowruns.activedataflow.io"), ("get", "jobs.batch"), ("list", "pods"),
    ("list", "events"),
]  # fmt: skip
HEARTBEAT_MAY_NOT = [
    ("get", "secrets"), ("watch", "dataflows.activedataflow.io"),
    ("delete", "dataflows.activedataflow.io"), ("create", "dataflowruns.activedataflow.io"),
    ("patch", "dataflowruns.activedataflow.io"), ("delete", "jobs.batch"), ("list", "jobs.batch"),
    ("get", "pods"), ("create", "pods"),
]  # fmt: skip


def heartbeat_can(kubectl: Kubectl, release_namespace: str, namespace: str) -> set[tuple[str, str]]:
    """Which of HEARTBEAT_MAY and HEARTBEAT_MAY_NOT `kubectl auth can-i` answers yes to."""
    account = f"system:serviceaccount:{release_namespace}:{PREFIX}-heartbeat"
    allowed = set()
    for verb, resource in HEARTBEAT_MAY + HEARTBEAT_MAY_NOT:
        out = kubectl.run("auth", "can-i", verb, resource, "-n", namespace, f"--as={account}",
                          check=False)  # fmt: skip
        if out.strip().splitlines()[0] == "yes":
            allowed.add((verb, resource))
    return allowed


def heartbeat_log(pod_output: Callable[[str, str], str], kubectl: Kubectl, namespace: str) -> str:
    [pod] = pods(kubectl, namespace, "app.kubernetes.io/component=heartbeat")
    return pod_output(namespace, pod["metadata"]["name"])


@pytest.fixture
def release_namespace(kubectl: Kubectl, namespace: str) -> Iterator[str]:
    name = f"{namespace}-adf"[:63]
    kubectl.run("create", "namespace", name)
    yield name
    helm("uninstall", RELEASE, "-n", name, "--ignore-not-found")
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def sqlite_files(data_dir: Path) -> tuple[Path, Path]:
    source, sink = data_dir / "shop.db", data_dir / "warehouse.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, price REAL)")
        conn.executemany(
            "INSERT INTO products VALUES (?, ?, ?)",
            [(i, f"Product {i}", i * 1.5) for i in range(1, SQLITE_ROWS + 1)],
        )
    return source, sink


@pytest.mark.e2e
@pytest.mark.postgres
def test_helm_install_run_upgrade_uninstall(
    kubectl: Kubectl,
    namespace: str,
    release_namespace: str,
    postgres: PostgresServer,
    new_database: Callable[[str], str],
    sqlite_files: tuple[Path, Path],
    tmp_path: Path,
    wait_for: WaitFor,
    pod_output: Callable[[str, str], str],
) -> None:
    # Install: only the flows' namespace is watched, so other tests' flows are left alone.
    installed = helm(
        "install", RELEASE, str(CHART), "-n", release_namespace, "--wait", "--timeout=120s",
        "--set", "watch.scope=namespaces", "--set", f"watch.namespaces={{{namespace}}}",
        "--set", "heartbeat.bindAddress=$(POD_IP)",
        "--set", "operator.health.bindAddress=$(POD_IP)",
        "--set", "pinger.enabled=false",  # enabled by the upgrade, once the pod address is known
        "--set", "heartbeat.dashboard.openReadOnly=true", "--set", "heartbeat.logFormat=json",
    )  # fmt: skip
    assert "open http://127.0.0.1:8080/dashboard/ and sign in" in installed  # NOTES
    url = heartbeat_url(kubectl, release_namespace, wait_for)
    base = url.removesuffix("/heartbeat")
    token = token_of(kubectl, release_namespace)
    assert len(token) == 48

    # A PostgreSQL flow and a SQLite flow, their URLs in Secrets the operator never reads.
    pg_source, pg_sink = new_database("e2e_src"), new_database("e2e_sink")
    with postgres.connect(pg_source.rsplit("/", 1)[1]) as conn:
        products.create_products(conn, PG_ROWS)
    sqlite_source, sqlite_sink = sqlite_files
    kubectl.apply(secret("pg-db", namespace, {"source": pg_source, "sink": pg_sink}))
    kubectl.apply(secret("sqlite-db", namespace, {
        "source": f"sqlite:///{sqlite_source}", "sink": f"sqlite:///{sqlite_sink}",
    }))  # fmt: skip
    kubectl.apply(dataflow("pg-sync", namespace, "pg-db"))
    kubectl.apply(dataflow("sqlite-sync", namespace, "sqlite-db"))
    flows = ["pg-sync", "sqlite-sync"]

    token_file = tmp_path / "token"
    token_file.write_text(token)
    wait_for_slot(kubectl, namespace, flows, wait_for)
    reply = ping(url, token_file)
    # Patches slower than the heartbeat's answer budget finish after the reply (flowsPending).
    assert reply["flowsTriggered"] + reply.get("flowsPending", 0) == 2, reply

    for flow in flows:
        wait_for(lambda f=flow: succeeded_runs(kubectl, namespace, f), timeout=120,
                 what=f"{flow}'s run")  # fmt: skip
    with postgres.connect(pg_sink.rsplit("/", 1)[1]) as conn:
        counts = conn.execute("SELECT count(*), count(title) FROM exports").fetchone()
        assert counts == (PG_ROWS, PG_ROWS)
    with sqlite3.connect(sqlite_sink) as conn:
        assert conn.execute("SELECT count(*), max(title) FROM exports").fetchone() == (
            SQLITE_ROWS, "Product 9",
        )  # fmt: skip

    shown = {row["NAME"]: row for row in table(kubectl, "dataflows", "-n", namespace)}
    for flow in flows:
        assert shown[flow]["SCHEDULE"] and shown[flow]["SUSPEND"] == "false"
        assert shown[flow]["LAST STATUS"] == "Succeeded"
        assert shown[flow]["LAST RUN"] not in ("", "<none>")
        assert shown[flow]["NEXT RUN"] not in ("", "<none>", "<invalid>")
    run_rows = table(kubectl, "dataflowruns", "-n", namespace)
    assert sorted(r["FLOW"] for r in run_rows) == flows
    for row in run_rows:
        assert row["PHASE"] == "Succeeded"
        assert row["ROWS"] == str(PG_ROWS if row["FLOW"] == "pg-sync" else SQLITE_ROWS)
        assert row["STARTED"] not in ("", "<none>") and row["DURATION"] not in ("", "<none>")

    use_dashboard(base, token, kubectl, namespace, flows)
    assert heartbeat_can(kubectl, release_namespace, namespace) == set(HEARTBEAT_MAY)

    # Upgrade with changed values: the operator restarts (Recreate), the CronJob starts pinging
    # the heartbeat pod; the token stays, and the next slot runs without any ping from the test.
    with postgres.connect(pg_source.rsplit("/", 1)[1]) as conn:
        products.add_products(conn, PG_ROWS + 1, PG_ROWS + 10)
    operator_before = uids(kubectl, release_namespace, "app.kubernetes.io/component=operator")
    helm(
        "upgrade", RELEASE, str(CHART), "-n", release_namespace, "--reuse-values", "--wait",
        "--timeout=120s", "--set", "pinger.enabled=true", "--set", f"pinger.url={url}",
        "--set", "operator.logFormat=json",
    )  # fmt: skip
    assert token_of(kubectl, release_namespace) == token
    operator_after = uids(kubectl, release_namespace, "app.kubernetes.io/component=operator")
    assert operator_after.isdisjoint(operator_before), "the changed value did not roll the operator"

    def pinged_by_cronjob() -> bool:
        jobs = release_objects(kubectl, "jobs", release_namespace)
        return any(j.get("status", {}).get("succeeded") for j in jobs)

    wait_for(pinged_by_cronjob, timeout=150, what="a successful ping Job of the CronJob")
    for flow in flows:
        wait_for(lambda f=flow: len(succeeded_runs(kubectl, namespace, f)) >= 2, timeout=150,
                 what=f"{flow}'s second run")  # fmt: skip
    with postgres.connect(pg_sink.rsplit("/", 1)[1]) as conn:
        assert conn.execute("SELECT count(*) FROM exports").fetchone() == (PG_ROWS + 10,)

    # Purge through the API: the finished runs go, and their Jobs and pods with them.
    for flow in flows:
        purged = api(f"{base}/api/v1/dataflows/{namespace}/{flow}/purge", "POST", token)
        assert len(purged["deleted"]) >= 2, purged

        def purged_gone(
            flow: str = flow, deleted: frozenset[str] = frozenset(purged["deleted"])
        ) -> bool:
            return not deleted & {r["metadata"]["name"] for r in runs_of(kubectl, namespace, flow)}

        wait_for(purged_gone, timeout=60, what=f"{flow}'s purged runs gone")

    # The heartbeat logged JSON lines (heartbeat.logFormat), the flow on its action lines, and
    # never the token.
    log_text = heartbeat_log(pod_output, kubectl, release_namespace)
    records = [json.loads(line) for line in log_text.splitlines() if line.strip()]
    assert any(r.get("flow") == flows[1] and "suspended" in r["message"] for r in records)
    assert any(r.get("flow") == flows[0] and "purged" in r["message"] for r in records)
    assert token not in log_text

    # Uninstall: delete the flows first (their runs, Jobs and pods go with them), then the release;
    # nothing of either is left behind.
    kubectl.run("delete", "dataflows", "--all", "-n", namespace, "--timeout=60s")
    for kind in ("dataflowruns", "jobs", "pods"):
        wait_for(lambda k=kind: not kubectl.get(k, "-n", namespace)["items"], timeout=90,
                 what=f"no {kind} left in {namespace}")  # fmt: skip
    helm("uninstall", RELEASE, "-n", release_namespace, "--wait", "--timeout=120s")
    namespaced = [
        "deployments",
        "cronjobs",
        "jobs",
        "pods",
        "services",
        "secrets",
        "serviceaccounts",
    ]
    for kind in namespaced:
        wait_for(lambda k=kind: not release_objects(kubectl, k, release_namespace), timeout=90,
                 what=f"no {kind} of the release left")  # fmt: skip
    for kind in ("roles", "rolebindings"):
        assert not release_objects(kubectl, kind, namespace)
    for kind in ("clusterroles", "clusterrolebindings"):
        assert not release_objects(kubectl, kind)
    wait_for(lambda: not pods(kubectl, release_namespace), timeout=90, what="no pods at all")
