"""Every sink mode on PostgreSQL, through `adf run`: append, upsert (± skipUnchanged), replace."""

from __future__ import annotations

import random
import time

import pytest

from tests.support import adf, products
from tests.support.pgflows import FlowDatabases

pytestmark = pytest.mark.postgres


def full_read(batch_size: int = 1000) -> dict[str, object]:
    return {"table": "products", "batchSize": batch_size}


def create_exports(dbs: FlowDatabases, *, stale_rows: int = 0) -> None:
    """The sink table, optionally holding products that are not in the source (ids 90001…)."""
    with dbs.sink() as conn:
        products.create_products(conn, stale_rows, table="exports", first=90_001)


def test_append_creates_the_table_and_copies_every_row(dbs: FlowDatabases) -> None:
    with dbs.source() as conn:
        products.create_products(conn, 2500)
    path = dbs.write("append", source=full_read(), sink={"table": "exports", "mode": "append"},
                     transform=[adf.EXPORT_STEP])  # fmt: skip

    result = dbs.run(path)

    assert result.returncode == 0, result.output
    summary = result.summary
    assert (summary["rowsRead"], summary["rowsWritten"], summary["rowsFailed"]) == (2500, 2500, 0)
    assert (summary["exitCode"], summary["error"], summary["flow"]) == (0, None, "tests/append")
    assert dbs.sink_rows() == adf.exported(dbs.source_rows())


def test_upsert_inserts_new_keys_and_updates_existing_ones(dbs: FlowDatabases) -> None:
    with dbs.source() as conn:
        products.create_products(conn, 1000)
    create_exports(dbs)
    upsert = {"table": "exports", "mode": "upsert", "keys": ["id"]}
    path = dbs.write("upsert", source=full_read(300), sink=upsert, transform=[adf.EXPORT_STEP])
    assert dbs.run(path).summary["rowsWritten"] == 1000

    with dbs.source() as conn:
        conn.execute("UPDATE products SET name = name || ' v2', price = price + 1 WHERE id <= 10")
        products.add_products(conn, 1001, 1005)
    result = dbs.run(path)

    assert result.returncode == 0, result.output
    assert (result.summary["rowsRead"], result.summary["rowsWritten"]) == (1005, 1005)
    assert dbs.sink_rows() == adf.exported(dbs.source_rows())


def test_upsert_skip_unchanged_rewrites_only_changed_rows(dbs: FlowDatabases) -> None:
    with dbs.source() as conn:
        products.create_products(conn, 1000)
    create_exports(dbs)
    sink = {"table": "exports", "mode": "upsert", "keys": ["id"], "skipUnchanged": True}
    path = dbs.write("skip", source=full_read(250), sink=sink, transform=[adf.EXPORT_STEP])
    first = dbs.run(path)
    assert (first.summary["rowsWritten"], first.summary["rowsSkipped"]) == (1000, 0)
    with dbs.sink() as conn:
        versions_before = dict(conn.execute("SELECT id, xmin::text FROM exports").fetchall())

    changed = {3, 250, 251, 600, 999}
    with dbs.source() as conn:
        conn.execute("UPDATE products SET price = price + 5 WHERE id = ANY(%s)", (list(changed),))
    second = dbs.run(path)

    assert second.returncode == 0, second.output
    summary = second.summary
    assert (summary["rowsRead"], summary["rowsWritten"], summary["rowsSkipped"]) == (1000, 5, 995)
    assert dbs.sink_rows() == adf.exported(dbs.source_rows())
    with dbs.sink() as conn:
        versions_after = dict(conn.execute("SELECT id, xmin::text FROM exports").fetchall())
    rewritten = {key for key, xmin in versions_after.items() if versions_before[key] != xmin}
    assert rewritten == changed  # unchanged rows were not touched at all


def test_replace_swaps_in_exactly_the_source_rows(dbs: FlowDatabases) -> None:
    with dbs.source() as conn:
        products.create_products(conn, 3000)
    create_exports(dbs, stale_rows=100)
    sink = {"table": "exports", "mode": "replace"}
    path = dbs.write("replace", source=full_read(500), sink=sink, transform=[adf.EXPORT_STEP])

    result = dbs.run(path)

    assert result.returncode == 0, result.output
    assert result.summary["rowsWritten"] == 3000
    assert dbs.sink_rows() == adf.exported(dbs.source_rows())  # the stale rows are gone


def test_replace_is_atomic_for_readers_and_when_killed(dbs: FlowDatabases) -> None:
    """A reader sees the old table or the new one, never a mix; a killed run leaves the old one."""
    with dbs.source() as conn:
        products.create_products(conn, 3000)
    create_exports(dbs, stale_rows=100)
    old = dbs.sink_rows()
    new = adf.exported(dbs.source_rows())
    sink = {"table": "exports", "mode": "replace"}
    path = dbs.write("replace", source=full_read(200), sink=sink, transform=[adf.EXPORT_STEP])
    env = {**dbs.env, "ADF_TEST_ROW_DELAY": "0.0005"}  # ~1.5 s per run

    killed = adf.start_flow(path, env)
    time.sleep(random.uniform(0.3, 1.0))  # the kill point is random on purpose
    assert killed.poll() is None, "the run ended before it could be killed"
    killed.kill()
    assert killed.wait(timeout=30) == -9
    assert dbs.sink_rows() == old

    running = adf.start_flow(path, env)
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    while running.poll() is None and time.monotonic() < deadline:
        with dbs.sink() as conn:
            count = conn.execute("SELECT count(*) FROM exports").fetchone()
        assert count is not None and count[0] in (len(old), len(new))
        seen.add(count[0])
    assert running.wait(timeout=5) == 0
    assert dbs.sink_rows() == new
    assert len(old) in seen  # the reader did look while the run was writing
