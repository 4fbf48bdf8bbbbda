"""SIGKILL `adf run` at random points mid-run, run again, compare the sink row by row.

The watermark is committed in the same transaction as each batch, so after any kill the sink holds
exactly a prefix of the source in cursor order (nothing half-written, nothing duplicated), and
the next run resumes right after that prefix: its rowsRead proves the watermark is neither ahead
of the data (rows would be lost) nor behind it (append would duplicate them).
"""

from __future__ import annotations

import random
import time

import pytest

from tests.support import adf, products
from tests.support.pgflows import FlowDatabases

pytestmark = pytest.mark.postgres

KILLS = 3


def wait_for_progress(dbs: FlowDatabases, flow: str, after: str | None, timeout: float) -> str:
    """Wait until the committed watermark of `flow` moves past `after`; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = dbs.watermark(flow)
        if current is not None and current != after:
            return current
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint of {flow} within {timeout} s")


def in_cursor_order(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return sorted(rows, key=lambda row: (row[6], row[0]))  # (updated_at, id)


@pytest.mark.parametrize(
    ("mode", "rows", "batch_size", "row_delay", "python"),
    [
        # A slow transform: kills land mostly while a batch is being transformed.
        ("append", 4000, 100, "0.0003", True),
        ("upsert", 4000, 100, "0.0003", True),
        # Full speed: kills land anywhere, also in COPY, in the upsert and in the commit.
        ("append", 100_000, 1000, "0", True),
        # No Python step: raw COPY data, two sink connections writing consecutive batches.
        ("append", 100_000, 1000, "0", False),
    ],
    ids=["append-slow", "upsert-slow", "append-full-speed", "append-raw-two-connections"],
)
def test_killed_runs_lose_nothing_and_duplicate_nothing(
    dbs: FlowDatabases, mode: str, rows: int, batch_size: int, row_delay: str, python: bool
) -> None:
    with dbs.source() as conn:
        products.create_products(conn, rows)
        # Interleave cursor order with id order, so a prefix by id would not pass by accident.
        conn.execute("UPDATE products SET updated_at = updated_at - (id % 4) * interval '1 hour'")
    with dbs.sink() as conn:
        products.create_products(conn, 0, table="exports")
        if mode == "append":  # no key: a duplicated row stays visible
            conn.execute("ALTER TABLE exports DROP CONSTRAINT exports_pkey")
    source_rows = dbs.source_rows()
    expected = in_cursor_order(adf.exported(source_rows) if python else source_rows)
    sink = {"table": "exports", "mode": mode, **({"keys": ["id"]} if mode == "upsert" else {})}
    source = {"table": "products", "cursor": {"column": "updated_at", "tieBreaker": "id"},
              "batchSize": batch_size}  # fmt: skip
    path = dbs.write("crash", source=source, sink=sink,
                     transform=[adf.EXPORT_STEP] if python else [])  # fmt: skip
    env = {**dbs.env, "ADF_TEST_ROW_DELAY": row_delay}

    watermark = None
    prefix = 0
    for _ in range(KILLS):
        process = adf.start_flow(path, env)
        try:
            watermark = wait_for_progress(dbs, "crash", watermark, timeout=60)
            time.sleep(random.uniform(0, 0.05))  # anywhere inside the next batch or two
        finally:
            process.kill()
            process.communicate(timeout=30)
        assert process.returncode == -9, "the run ended before it could be killed"
        in_sink = in_cursor_order(dbs.sink_rows())
        assert in_sink == expected[: len(in_sink)]  # a prefix: nothing lost, nothing repeated
        assert len(in_sink) > prefix  # every killed run still made progress
        prefix = len(in_sink)
        watermark = dbs.watermark("crash")

    final = adf.run_flow(path, dbs.env)

    assert final.returncode == 0, final.output
    assert final.summary["rowsRead"] == rows - prefix  # resumed exactly after the prefix
    assert in_cursor_order(dbs.sink_rows()) == expected
