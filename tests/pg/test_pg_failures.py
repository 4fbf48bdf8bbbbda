"""Bad input on PostgreSQL: the right exit code, a message naming the culprit, no password, and
nothing in the sink beyond the last committed batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.support import adf, products
from tests.support.pgflows import FlowDatabases
from tests.support.postgres import free_port

pytestmark = pytest.mark.postgres

CONNECTION, DATA = 4, 5
SECRET = "s3cr3t-Pa55word"


def assert_no_secret(result: adf.AdfResult, termination_log: Path, *secrets: str) -> None:
    written = termination_log.read_text() if termination_log.exists() else ""
    for secret in secrets:
        assert secret not in result.output
        assert secret not in written


def simple_flow(dbs: FlowDatabases, name: str, **source: Any) -> Path:
    return dbs.write(name, source={"table": "products", **source},
                     sink={"table": "exports", "mode": "append"})  # fmt: skip


def test_unreachable_database_exits_4_without_the_password(dbs: FlowDatabases) -> None:
    dbs.source_url = f"postgresql+psycopg://adf:{SECRET}@127.0.0.1:{free_port()}/shop"
    result = dbs.run(simple_flow(dbs, "unreachable"))

    assert result.returncode == CONNECTION, result.output
    assert result.summary["exitCode"] == CONNECTION
    assert "127.0.0.1" in result.summary["error"]
    assert_no_secret(result, dbs.tmp_path / "termination-log", SECRET)


def test_wrong_password_exits_4_without_either_password(dbs: FlowDatabases) -> None:
    real_password = make_url(dbs.sink_url).password
    assert real_password
    dbs.sink_url = make_url(dbs.sink_url).set(password=SECRET).render_as_string(False)
    with dbs.source() as conn:
        products.create_products(conn, 10)

    result = dbs.run(simple_flow(dbs, "wrong-password"))

    assert result.returncode == CONNECTION, result.output
    assert result.summary["exitCode"] == CONNECTION
    assert_no_secret(result, dbs.tmp_path / "termination-log", SECRET, real_password)


def test_unknown_table_exits_4_and_names_it(dbs: FlowDatabases) -> None:
    path = dbs.write("no-table", source={"table": "no_such_products"},
                     sink={"table": "exports", "mode": "append"})  # fmt: skip
    result = dbs.run(path)

    assert result.returncode == CONNECTION, result.output
    assert "no_such_products" in result.summary["error"]


def test_unknown_column_exits_4_and_names_it(dbs: FlowDatabases) -> None:
    with dbs.source() as conn:
        products.create_products(conn, 10)
    result = dbs.run(simple_flow(dbs, "no-column", columns=["id", "colour"]))

    assert result.returncode == CONNECTION, result.output
    assert "colour" in result.summary["error"]
    with dbs.sink() as conn:
        assert conn.execute("SELECT to_regclass('exports')").fetchone() == (None,)


def test_row_refused_by_the_sink_keeps_the_committed_batches(dbs: FlowDatabases) -> None:
    """A CHECK constraint refuses price >= 50 (ids 4900-5000): the batch 4001-5000 fails."""
    with dbs.source() as conn:
        products.create_products(conn, 5000)
    with dbs.sink() as conn:
        products.create_products(conn, 0, table="exports")
        conn.execute("ALTER TABLE exports ADD CONSTRAINT cheap CHECK (price < 50)")
    source = {"table": "products", "batchSize": 1000,
              "cursor": {"column": "updated_at", "tieBreaker": "id"}}  # fmt: skip
    path = dbs.write("refused", source=source, sink={"table": "exports", "mode": "append"},
                     transform=[adf.EXPORT_STEP])  # fmt: skip

    failed = dbs.run(path)

    assert failed.returncode == DATA, failed.output
    assert failed.summary["exitCode"] == DATA
    assert "cheap" in failed.summary["error"]
    expected = adf.exported(dbs.source_rows())
    assert dbs.sink_rows() == expected[:4000]

    with dbs.sink() as conn:
        conn.execute("ALTER TABLE exports DROP CONSTRAINT cheap")
    resumed = dbs.run(path)
    assert resumed.returncode == 0, resumed.output
    assert resumed.summary["rowsRead"] == 1000
    assert dbs.sink_rows() == expected
