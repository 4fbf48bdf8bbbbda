"""On PostgreSQL the batches of a run commit without a WAL flush wait; the run's end flushes them.

A batch's rows and its watermark commit together either way, so a server crash can only lose
whole newest batches (read again by the next run); ``finish`` commits synchronously, which makes
every earlier commit durable before the run reports success.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from sqlalchemy import Connection, Table, create_engine, event, make_url

from adf_core.connectors.base import Checkpoint
from adf_core.connectors.sql import PostgresWriter, RawCopy, SqlSink
from adf_core.messages import Batch, Row, Watermark
from adf_core.spec import SqlSinkSpec

pytestmark = pytest.mark.postgres


class SettingProbe(PostgresWriter):
    """The PostgreSQL writer, noting the transaction's synchronous_commit at every insert."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def insert(
        self, conn: Connection, table: Table, columns: Sequence[str], rows: list[Row] | RawCopy
    ) -> int:
        self.seen.append(str(conn.exec_driver_sql("SHOW synchronous_commit").scalar_one()))
        return super().insert(conn, table, columns, rows)


def batch(first: int) -> Batch:
    return Batch(("id",), [(first,), (first + 1,)], "test", Watermark(first + 1))


def synchronous_by_default(url: str) -> None:
    """The test server runs with synchronous_commit off; this database gets the usual on."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        name = conn.dialect.identifier_preparer.quote(str(make_url(url).database))
        conn.exec_driver_sql(f"ALTER DATABASE {name} SET synchronous_commit TO on")
    admin.dispose()


def test_batches_skip_the_flush_wait_and_finish_commits_synchronously(
    new_database: Callable[[str], str],
) -> None:
    url = new_database("flush")
    synchronous_by_default(url)
    probe = SettingProbe()
    sink = SqlSink(
        SqlSinkSpec.model_validate({"url": {"value": url}, "table": "out"}), writer=probe
    )
    sink.open()
    try:
        sink.write(batch(1), Checkpoint("f", Watermark(2)))
        sink.write(batch(3), Checkpoint("f", Watermark(4)))
        statements: list[str] = []

        def note(*args: Any) -> None:
            statements.append(args[2])

        assert sink._engine is not None
        event.listen(sink._engine, "before_cursor_execute", note)
        sink.finish(Checkpoint("f", Watermark(4)))

        assert probe.seen == ["off", "off"]
        assert statements[0] == "SET LOCAL synchronous_commit TO on"
        assert sink.read_state("f") == Watermark(4)
    finally:
        sink.close()
