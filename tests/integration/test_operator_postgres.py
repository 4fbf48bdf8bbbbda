"""The operator moving rows PostgreSQL -> PostgreSQL on the dev control plane: a full first run,
then an incremental one that reads only the new rows (URLs with passwords come from Secrets)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner

from devcluster.pytest_plugin import Kubectl, wait_for

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # tests/ is not a package; tests.support lives at the repository root
    sys.path.insert(0, ROOT)

from tests.support.postgres import PostgresServer  # noqa: E402
from tests.support.products import add_products, create_products, fetch_rows  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
ROWS = 2000
FLOW = "pg-sync"


@pytest.fixture
def databases(postgres: PostgresServer) -> Iterator[tuple[str, str]]:
    names = (f"op_src_{uuid.uuid4().hex[:8]}", f"op_sink_{uuid.uuid4().hex[:8]}")
    for name in names:
        postgres.create_database(name)
    yield names
    for name in names:
        postgres.drop_database(name)


def _run(kubectl: Kubectl, ns: str, exclude: set[str]) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        for run in kubectl.get("dataflowruns", "-n", ns)["items"]:
            done = run.get("status", {}).get("phase") in ("Succeeded", "Failed")
            if run["metadata"]["name"] not in exclude and done:
                return dict(run)
        return None

    return wait_for(finished, timeout=120, what="the run to finish")


def test_postgres_flow_full_then_incremental(
    kubectl: Kubectl, namespace: str, postgres: PostgresServer, databases: tuple[str, str]
) -> None:
    source, sink = databases
    with postgres.connect(source) as conn:
        create_products(conn, ROWS)
    for secret, database in (("src-db", source), ("sink-db", sink)):
        url = postgres.url(database)
        kubectl.run(
            "create", "secret", "generic", secret, f"--from-literal=url={url}", "-n", namespace
        )
    flow = {
        "apiVersion": "activedataflow.io/v1alpha1",
        "kind": "DataFlow",
        "metadata": {"name": FLOW},
        "spec": {
            "source": {
                "sql": {
                    "url": {"secretKeyRef": {"name": "src-db", "key": "url"}},
                    "table": "products",
                    "cursor": {"column": "updated_at", "tieBreaker": "id"},
                    "batchSize": 500,
                }
            },
            "sink": {
                "sql": {
                    "url": {"secretKeyRef": {"name": "sink-db", "key": "url"}},
                    "table": "products",
                    "mode": "upsert",
                    "keys": ["id"],
                }
            },
            "runTemplate": {"backoffLimit": 0},
        },
    }
    args = ["run", "--standalone", "-m", "adf_operator.handlers", "--namespace", namespace]
    with KopfRunner(args, timeout=60) as runner:
        kubectl.apply(flow, namespace)
        kubectl.run("annotate", "-n", namespace, "dataflow", FLOW, "activedataflow.io/run-now=1")
        first = _run(kubectl, namespace, set())
        assert first["status"]["phase"] == "Succeeded", first["status"]
        assert (first["status"]["rowsRead"], first["status"]["rowsWritten"]) == (ROWS, ROWS)

        with postgres.connect(source) as conn:
            add_products(conn, ROWS + 1, ROWS + 100)
        kubectl.run("annotate", "-n", namespace, "dataflow", FLOW, "activedataflow.io/run-now=2")
        second = _run(kubectl, namespace, {first["metadata"]["name"]})
        assert second["status"]["phase"] == "Succeeded", second["status"]
        assert second["status"]["rowsRead"] == 100
        assert second["status"]["cursorStart"] == first["status"]["cursorEnd"]
    assert runner.exception is None, runner.output

    with postgres.connect(source) as src, postgres.connect(sink) as dst:
        assert fetch_rows(dst, "products") == fetch_rows(src, "products")
    password = postgres.password
    assert not password or password not in kubectl.run(
        "get", "dataflowruns,events", "-n", namespace, "-o", "yaml"
    )
