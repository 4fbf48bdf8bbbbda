"""Runs that hit a fresh PostgreSQL sink database at the same moment must not collide.

Each of them finds ``adf_state`` (and the dead-letter table, and a shared sink table) missing and
creates it; without the creation lock they fail with a unique violation on ``pg_type``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from adf_core.connectors.base import Checkpoint, DeadLetters
from adf_core.connectors.sql import SqlSink
from adf_core.messages import Batch, RowFailure
from adf_core.spec import SqlSinkSpec

pytestmark = pytest.mark.postgres

SINKS = 8


def first_writes(url: str, tables: list[str], mode: str = "append") -> list[str]:
    """Open one sink per table at once, then write each one's first batch at once."""
    barrier = threading.Barrier(len(tables), timeout=60)

    def run(index: int) -> str:
        spec: dict[str, object] = {"url": {"value": url}, "table": tables[index], "mode": mode}
        if mode == "upsert":
            spec["keys"] = ["id"]
        sink = SqlSink(SqlSinkSpec.model_validate(spec))
        barrier.wait()
        sink.open()
        try:
            barrier.wait()
            batch = Batch(("id", "name"), [(index, f"row {index}")], "test")
            letters = DeadLetters(
                "adf_dead_letters", f"flow-{index}", [RowFailure({"id": -index}, "x", "bad")]
            )
            sink.write(batch, Checkpoint(f"flow-{index}", None), letters)
        finally:
            sink.close()
        return tables[index]

    with ThreadPoolExecutor(len(tables)) as pool:
        return list(pool.map(run, range(len(tables))))


def count(url: str, sql: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(sql).scalar_one())
    finally:
        engine.dispose()


def test_first_runs_on_a_fresh_sink_all_succeed(new_database: Callable[[str], str]) -> None:
    url = new_database("fresh")
    tables = [f"out_{i}" for i in range(SINKS)]

    assert first_writes(url, tables) == tables

    assert count(url, "SELECT count(*) FROM adf_state") == SINKS
    assert count(url, "SELECT count(*) FROM adf_dead_letters") == SINKS
    for table in tables:
        assert count(url, f"SELECT count(*) FROM {table}") == 1


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_runs_creating_one_sink_table_at_once_all_write(
    new_database: Callable[[str], str], mode: str
) -> None:
    url = new_database("shared")

    first_writes(url, ["shared"] * SINKS, mode)

    assert count(url, "SELECT count(DISTINCT id) FROM shared") == SINKS
    assert count(url, "SELECT count(*) FROM adf_state") == SINKS
