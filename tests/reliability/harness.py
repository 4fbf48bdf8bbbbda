"""What the fault scenarios share: the operator as a process, the PostgreSQL source and sink with
their checksums, flow manifests, and the cluster actions (trigger, schedule, wait, kill).

Every flow here reads the `products` table incrementally (cursor `updated_at`, tie-breaker `id`)
and appends to a sink table without a key, so a duplicated row stays visible; its python step
(tests/support/flows/exports.py) upper-cases the SKU and can be slowed per row, so a fault can hit
a run in the middle of a batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from adf_core.messages import Watermark
from adf_operator import names
from adf_operator.models import FINAL_PHASES
from devcluster.controlplane import free_port, pod_dir, stop_group
from devcluster.pytest_plugin import Kubectl, wait_for
from tests.support import adf, products
from tests.support.postgres import LocalPostgres

SOAK = os.environ.get("ADF_SOAK") == "1"
SOURCE_SECRET = "source-db"
SINK_SECRET = "sink-db"
Obj = dict[str, Any]
Row = tuple[Any, ...]


def trials(short: int, long: int) -> int:
    """How many times a scenario injects its fault: `long` under ADF_SOAK=1."""
    return long if SOAK else short


# --- the operator ------------------------------------------------------------------------------


class OperatorProcess:
    """`python -m adf_operator` watching one namespace; killed and restarted by the scenarios.

    Its output of every start is appended to one log file, which the secret checks read.
    """

    def __init__(
        self, namespace: str, log: Path, follow_interval: int = 2, kubeconfig: Path | None = None
    ) -> None:
        self.namespace, self.log = namespace, log
        self.env = {**os.environ, "ADF_FOLLOW_INTERVAL": str(follow_interval)}
        if kubeconfig is not None:  # e.g. one carrying only a ServiceAccount token
            self.env["KUBECONFIG"] = str(kubeconfig)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "adf_operator", "-n", self.namespace, "--log-format=plain"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no clean-up, no last status write."""
        assert self.proc is not None and self.proc.poll() is None, "the operator is not running"
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_group(self.proc.pid)
            self.proc.wait(timeout=30)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class HeartbeatProcess:
    """`adf heartbeat serve` on 127.0.0.1 for one namespace (a replica of the chart's service)."""

    def __init__(self, namespace: str, token_file: Path, log: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        argv = [str(adf.ADF), "heartbeat", "serve", "--host=127.0.0.1", f"--port={self.port}",
                f"--token-file={token_file}", f"--namespace={namespace}", *args]  # fmt: skip
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, self.output()
            with urllib.request.urlopen(self.url + "/readyz", timeout=5) as response:
                return bool(response.status == 200)

        wait_for(ready, timeout=60, what=f"the heartbeat on {self.url} to be ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            stop_group(self.proc.pid)
        self.proc.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def post(
    url: str, body: bytes = b"{}", headers: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, Obj]:
    """One POST; (status, JSON reply)."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


# --- databases and checksums ---------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """The sink against what the source says it should hold."""

    rows_checked: int
    lost: int
    duplicated: int
    unexpected: int
    expected_checksum: tuple[int, str]
    sink_checksum: tuple[int, str]

    @property
    def identical(self) -> bool:
        return self.expected_checksum == self.sink_checksum


def checksum(rows: list[Row]) -> tuple[int, str]:
    """Row count and md5 of the rows in a stable order."""
    digest = hashlib.md5(usedforsecurity=False)
    for row in sorted(rows, key=cursor_key):
        digest.update(repr(row).encode() + b"\n")
    return len(rows), digest.hexdigest()


def cursor_key(row: Row) -> tuple[datetime, int]:
    """(updated_at, id): the order in which an incremental read visits the products."""
    return row[6], row[0]


def compare(expected: list[Row], sink: list[Row]) -> Comparison:
    want, got = Counter(expected), Counter(sink)
    ids = Counter(row[0] for row in sink)
    return Comparison(
        rows_checked=len(expected),
        lost=sum((want - got).values()),
        duplicated=sum(n - 1 for n in ids.values() if n > 1),
        unexpected=sum((got - want).values()),
        expected_checksum=checksum(expected),
        sink_checksum=checksum(sink),
    )


@dataclass
class Databases:
    """A source and a sink database of one test (on one server, or on two)."""

    source_server: LocalPostgres
    source_db: str
    sink_server: LocalPostgres
    sink_db: str
    namespace: str

    @property
    def urls(self) -> dict[str, str]:
        """The Secrets' URLs, passwords included (what must never show up anywhere)."""
        return {
            SOURCE_SECRET: self.source_server.url(self.source_db),
            SINK_SECRET: self.sink_server.url(self.sink_db),
        }

    def create_secrets(self, kubectl: Kubectl) -> None:
        for secret, url in self.urls.items():
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret},
                "stringData": {"url": url},
            }
            kubectl.apply(body, self.namespace)

    def source(self) -> psycopg.Connection[Row]:
        return self.source_server.connect(self.source_db)

    def sink(self) -> psycopg.Connection[Row]:
        return self.sink_server.connect(self.sink_db)

    def fill(self, rows: int, *tables: str) -> None:
        """`rows` products in the source; empty keyless sink tables (duplicates stay visible)."""
        with self.source() as conn:
            products.create_products(conn, rows)
        with self.sink() as conn:
            for table in tables:
                products.create_products(conn, 0, table=table)
                conn.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{table}_pkey"')

    def add_rows(self, first: int, last: int) -> None:
        with self.source() as conn:
            products.add_products(conn, first, last)

    def expected(self) -> list[Row]:
        """The source rows as the flows write them, in cursor order."""
        with self.source() as conn:
            return sorted(adf.exported(products.fetch_rows(conn, "products")), key=cursor_key)

    def sink_rows(self, table: str) -> list[Row]:
        with self.sink() as conn:
            return products.fetch_rows(conn, table)

    def compare(self, table: str) -> Comparison:
        return compare(self.expected(), self.sink_rows(table))

    def snapshot(self, flow: str, table: str) -> tuple[Watermark | None, list[Row]]:
        """The committed watermark of `flow` and the sink rows, read in one snapshot."""
        with self.sink() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            rows = sorted(products.fetch_rows(conn, table), key=cursor_key)
            found = conn.execute("SELECT to_regclass('adf_state')").fetchone()
            mark = None
            if found and found[0] is not None:
                mark = conn.execute(
                    "SELECT watermark FROM adf_state WHERE flow_id = %s",
                    (f"{self.namespace}/{flow}",),
                ).fetchone()
        watermark = Watermark.from_json(mark[0]) if mark and mark[0] else None
        return watermark, rows


def check_prefix(expected: list[Row], watermark: Watermark | None, sink: list[Row]) -> None:
    """The sink holds exactly a prefix of the source in cursor order (nothing lost before the
    last row, nothing twice) and the watermark is the key of that last row: never ahead of the
    data (rows would be skipped), never behind it (rows would be written twice)."""
    assert sink == expected[: len(sink)], "the sink is not a prefix of the source in cursor order"
    if sink:
        assert watermark is not None and watermark.key() == cursor_key(sink[-1]), (
            f"watermark {watermark} does not match the last committed row {cursor_key(sink[-1])}"
        )
    else:
        assert watermark is None, f"watermark {watermark} but no committed row"


def pg_ctl(server: LocalPostgres, action: str) -> None:
    """`pg_ctl stop|restart -m fast` on a test server, keeping its data (LocalPostgres itself only
    starts a fresh server and stops it for good); `restart` also starts a stopped server with the
    options it last ran with."""
    log = ["-l", str(server.log_file)] if action != "stop" else []
    server._run(
        server.pg_ctl, action, *log, "-m", "fast", "-w", "-t", "60", "-D", str(server.data_dir)
    )


# --- manifests ---------------------------------------------------------------------------------


def flow_manifest(
    name: str,
    *,
    table: str = "exports",
    row_delay: float = 0.0,
    backoff_limit: int = 0,
    batch_size: int = 100,
    **spec: Any,
) -> Obj:
    """An incremental PostgreSQL flow products -> `table` (append), URLs from the Secrets."""
    run_template: Obj = {"backoffLimit": backoff_limit}
    if row_delay:
        run_template["env"] = [{"name": "ADF_TEST_ROW_DELAY", "value": str(row_delay)}]
    return {
        "apiVersion": names.API,
        "kind": "DataFlow",
        "metadata": {"name": name},
        "spec": {
            "source": {
                "sql": {
                    "url": {"secretKeyRef": {"name": SOURCE_SECRET, "key": "url"}},
                    "table": "products",
                    "cursor": {"column": "updated_at", "tieBreaker": "id"},
                    "batchSize": batch_size,
                }
            },
            "transform": [adf.EXPORT_STEP],
            "sink": {
                "sql": {
                    "url": {"secretKeyRef": {"name": SINK_SECRET, "key": "url"}},
                    "table": table,
                    "mode": "append",
                }
            },
            "runTemplate": run_template,
            **spec,
        },
    }


# --- cluster actions -----------------------------------------------------------------------------


def trigger(kubectl: Kubectl, namespace: str, flow: str) -> str:
    """Run `flow` now (what `adf trigger` does); returns the name the run will have."""
    request = uuid.uuid4().hex
    kubectl.run(
        "annotate", "--overwrite", "-n", namespace, "dataflow", flow, f"{names.RUN_NOW}={request}"
    )
    return names.manual_run_name(flow, request)


def schedule(kubectl: Kubectl, namespace: str, flow: str, slot: datetime, missed: int = 0) -> str:
    """Mark a slot due (what the heartbeat does); returns the slot's run name."""
    kubectl.run(
        "annotate",
        "--overwrite",
        "-n",
        namespace,
        "dataflow",
        flow,
        f"{names.SCHEDULED_TIME}={slot:%Y-%m-%dT%H:%M:%SZ}",
        f"{names.MISSED_SLOTS}={missed}",
    )
    return names.scheduled_run_name(flow, slot)


def runs(kubectl: Kubectl, namespace: str) -> list[Obj]:
    items: list[Obj] = kubectl.get("dataflowruns", "-n", namespace)["items"]
    return items


def phase(run: Obj) -> str | None:
    value = run.get("status", {}).get("phase")
    return str(value) if value else None


def stuck(kubectl: Kubectl, namespace: str) -> list[str]:
    """Runs not in a final phase."""
    return [r["metadata"]["name"] for r in runs(kubectl, namespace) if phase(r) not in FINAL_PHASES]


def wait_phase(
    kubectl: Kubectl, namespace: str, run: str, *phases: str, timeout: float = 120
) -> Obj:
    def reached() -> Obj | None:
        obj = kubectl.get("dataflowrun", run, "-n", namespace)
        return obj if phase(obj) in phases else None

    return wait_for(reached, timeout=timeout, what=f"run {run} to be {'/'.join(phases)}")


def wait_final(kubectl: Kubectl, namespace: str, run: str, timeout: float = 120) -> Obj:
    return wait_phase(kubectl, namespace, run, *FINAL_PHASES, timeout=timeout)


def running_pod(kubectl: Kubectl, namespace: str, run: str) -> Obj:
    """The run's pod once its process runs."""

    def find() -> Obj | None:
        pods = kubectl.get("pods", "-n", namespace, "-l", f"{names.LABEL_RUN}={run}")["items"]
        live = [p for p in pods if p["status"].get("phase") == "Running"]
        return live[0] if live else None

    found: Obj = wait_for(find, timeout=120, what=f"a running pod of {run}")
    return found


def kill_pod_process(state_dir: Path, namespace: str, pod: str) -> None:
    """SIGKILL the pod's process group, as an OOM kill or a node crash would end it."""
    pid = int((pod_dir(state_dir, namespace, pod) / f"{names.CONTAINER}.pid").read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def flow_status(kubectl: Kubectl, namespace: str, flow: str) -> Obj:
    status: Obj = kubectl.get("dataflow", flow, "-n", namespace).get("status", {})
    return status


def jobs(kubectl: Kubectl, namespace: str) -> list[Obj]:
    items: list[Obj] = kubectl.get("jobs", "-n", namespace)["items"]
    return items
