"""Incremental runs on PostgreSQL: the composite watermark over several invocations, and backfill.

Generated products share one `updated_at` per three ids, so batch edges and run edges fall inside
groups of equal cursor values: exactly where a plain `cursor > watermark` drops rows.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import adf, products
from tests.support.pgflows import FlowDatabases

pytestmark = pytest.mark.postgres

CURSOR = {"column": "updated_at", "tieBreaker": "id"}


def incremental(batch_size: int) -> dict[str, Any]:
    return {"table": "products", "cursor": CURSOR, "batchSize": batch_size}


def test_runs_pick_up_inserts_updates_and_ties_at_the_watermark(dbs: FlowDatabases) -> None:
    with dbs.source() as conn:
        products.create_products(conn, 1000)
    with dbs.sink() as conn:
        products.create_products(conn, 0, table="exports")
    sink = {"table": "exports", "mode": "upsert", "keys": ["id"]}
    path = dbs.write("sync", source=incremental(64), sink=sink, transform=[adf.EXPORT_STEP])

    first = dbs.run(path)
    assert first.returncode == 0, first.output
    assert (first.summary["rowsRead"], first.summary["cursorStart"]) == (1000, None)
    assert dbs.sink_rows() == adf.exported(dbs.source_rows())

    idle = dbs.run(path)
    assert (idle.summary["rowsRead"], idle.summary["rowsWritten"]) == (0, 0)
    assert idle.summary["cursorStart"] == first.summary["cursorEnd"]

    with dbs.source() as conn:
        # ids 1001 and 1002 share updated_at with 999 and 1000, the last rows already read.
        products.add_products(conn, 1001, 1030)
        conn.execute(
            "UPDATE products SET price = price * 2, updated_at = timestamptz '2030-01-01' "
            "+ id * interval '1 minute' WHERE id % 50 = 0"
        )
    third = dbs.run(path)

    assert third.returncode == 0, third.output
    assert third.summary["rowsRead"] == 30 + 20
    assert third.summary["cursorStart"] == first.summary["cursorEnd"]
    assert dbs.sink_rows() == adf.exported(dbs.source_rows())


def test_ties_across_batch_edges_are_neither_skipped_nor_repeated(dbs: FlowDatabases) -> None:
    """40 rows share one cursor value; batches of 7 and a row limit stop runs inside the group."""
    with dbs.source() as conn:
        products.create_products(conn, 50)
        conn.execute("UPDATE products SET updated_at = '2024-06-01T00:00:00Z' WHERE id <= 40")
    sink = {"table": "exports", "mode": "append"}  # no key: a repeated row would be visible
    limited = dbs.write("ties", source=incremental(7), sink=sink, transform=[adf.EXPORT_STEP],
                        maxRowsPerRun=21)  # fmt: skip

    written = []
    for _ in range(10):
        result = dbs.run(limited)
        assert result.returncode == 0, result.output
        written.append(result.summary["rowsWritten"])
        if result.summary["rowsRead"] == 0:
            break
    assert written[0] < 50  # the first run stopped inside the data
    with dbs.source() as conn:  # late rows at the watermark's cursor value, after its tie-breaker
        products.add_products(conn, 51, 55)
        conn.execute("UPDATE products SET updated_at = '2024-06-01T00:00:00Z' WHERE id > 50")
    last = dbs.run(limited)

    assert last.summary["rowsRead"] == 5
    assert sum(written) + last.summary["rowsWritten"] == 55
    assert dbs.sink_rows() == adf.exported(dbs.source_rows())


def test_backfill_window_reads_its_range_and_leaves_the_watermark(dbs: FlowDatabases) -> None:
    with dbs.source() as conn:
        products.create_products(conn, 900)
    with dbs.sink() as conn:
        products.create_products(conn, 0, table="exports")
    sink = {"table": "exports", "mode": "upsert", "keys": ["id"]}
    path = dbs.write("backfill", source=incremental(100), sink=sink, transform=[adf.EXPORT_STEP])
    assert dbs.run(path).returncode == 0
    watermark = dbs.watermark("backfill")
    assert watermark is not None
    with dbs.sink() as conn:
        conn.execute("DELETE FROM exports WHERE id BETWEEN 301 AND 600")

    # updated_at = 2024-01-01 + id/3 seconds: [00:01:40, 00:03:20) holds ids 300..599.
    result = dbs.run(
        path, "--window-from", "2024-01-01T00:01:40+00:00", "--window-to", "2024-01-01T00:03:20Z"
    )

    assert result.returncode == 0, result.output
    assert result.summary["rowsRead"] == 300
    expected = [row for row in adf.exported(dbs.source_rows()) if row[0] != 600]
    assert dbs.sink_rows() == expected
    assert dbs.watermark("backfill") == watermark


def test_lag_rereads_late_rows_that_land_behind_the_watermark(dbs: FlowDatabases) -> None:
    with dbs.source() as conn:
        products.create_products(conn, 300)  # the last updated_at is 2024-01-01 00:01:40
    with dbs.sink() as conn:
        products.create_products(conn, 0, table="exports")
    source = {**incremental(50), "cursor": {**CURSOR, "lag": 60}}
    sink = {"table": "exports", "mode": "upsert", "keys": ["id"]}
    path = dbs.write("lagged", source=source, sink=sink, transform=[adf.EXPORT_STEP])
    assert dbs.run(path).summary["rowsRead"] == 300

    with dbs.source() as conn:  # committed late: 10 s behind the watermark, within the lag
        products.add_products(conn, 5000, 5000)
        conn.execute("UPDATE products SET updated_at = '2024-01-01T00:01:30Z' WHERE id = 5000")
    result = dbs.run(path)

    assert result.returncode == 0, result.output
    assert 1 <= result.summary["rowsRead"] < 300  # the overlap only, not everything again
    assert dbs.sink_rows() == adf.exported(dbs.source_rows())


@pytest.mark.parametrize(
    "source",
    [
        {"table": "products", "where": "active"},
        {"query": "SELECT id, name, sku, price, category, active, updated_at FROM products "
                  "WHERE active"},
    ],
    ids=["table-where", "query"],
)  # fmt: skip
def test_filtered_sources_read_incrementally(dbs: FlowDatabases, source: dict[str, Any]) -> None:
    with dbs.source() as conn:
        products.create_products(conn, 700)  # every 7th product is inactive
    with dbs.sink() as conn:
        products.create_products(conn, 0, table="exports")
    sink = {"table": "exports", "mode": "upsert", "keys": ["id"]}
    path = dbs.write("filtered", source={**source, "cursor": CURSOR, "batchSize": 64}, sink=sink,
                     transform=[adf.EXPORT_STEP])  # fmt: skip
    assert dbs.run(path).summary["rowsRead"] == 600

    with dbs.source() as conn:
        products.add_products(conn, 701, 714)  # 707 and 714 are inactive
    result = dbs.run(path)

    assert result.returncode == 0, result.output
    assert result.summary["rowsRead"] == 12
    assert dbs.sink_rows() == [row for row in adf.exported(dbs.source_rows()) if row[5]]
