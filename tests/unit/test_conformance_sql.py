"""The SQL connector through the conformance suite, on SQLite with each write strategy.

The SQLite fast path (raw executemany) and the generic SQLAlchemy path (insertmanyvalues, what
other dialects get) both run here; tests/pg runs the PostgreSQL COPY path end to end.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, create_engine, insert

from adf_core.connectors.sql import GenericWriter, SqliteWriter, SqlSink, SqlSource, Writer
from adf_core.spec import SqlSinkSpec, SqlSourceSpec
from tests.unit.conformance import (  # noqa: F401 - collected as tests of this module
    SAMPLE,
    Harness,
    test_a_failed_batch_leaves_rows_and_checkpoint_unchanged,
    test_batches_offer_per_message_views,
    test_close_is_safe_after_a_failed_open,
    test_reads_every_row_once_in_cursor_order,
    test_resumes_strictly_after_a_watermark_inside_a_tie_group,
    test_sink_writes_rows_and_checkpoint_together,
)


def sample_table(name: str, metadata: MetaData) -> Table:
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True),
        Column("cursor", Integer, nullable=False),
        Column("name", Text),
    )


def sqlite_harness(tmp_path: Path, writer: Writer) -> Harness:
    source_url, sink_url = f"sqlite:///{tmp_path}/source.db", f"sqlite:///{tmp_path}/sink.db"
    engine = create_engine(source_url)
    with engine.begin() as conn:
        table = sample_table("items", MetaData())
        table.create(conn)
        conn.execute(
            insert(table), [dict(zip(("id", "cursor", "name"), r, strict=True)) for r in SAMPLE]
        )
    engine.dispose()
    engine = create_engine(sink_url)
    with engine.begin() as conn:
        sample_table("copies", MetaData()).create(conn)
    engine.dispose()

    def source(batch_size: int) -> SqlSource:
        spec = SqlSourceSpec.model_validate(
            {
                "url": {"value": source_url},
                "table": "items",
                "cursor": {"column": "cursor", "tieBreaker": "id"},
                "batchSize": batch_size,
            }
        )
        return SqlSource(spec)

    def sink() -> SqlSink:
        spec = SqlSinkSpec.model_validate({"url": {"value": sink_url}, "table": "copies"})
        return SqlSink(spec, writer=writer)

    def stored() -> list[tuple[object, ...]]:
        engine = create_engine(sink_url)
        with engine.connect() as conn:
            rows = [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM copies ORDER BY id")]
        engine.dispose()
        return rows

    return Harness(type(writer).__name__, source, sink, stored)


@pytest.fixture(params=[SqliteWriter, GenericWriter], ids=["sqlite-executemany", "generic"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return sqlite_harness(tmp_path, request.param())
