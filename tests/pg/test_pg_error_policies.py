"""onError policies and typed messages against PostgreSQL's own types (numeric, timestamptz)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support import adf, products
from tests.support.pgflows import FlowDatabases

pytestmark = pytest.mark.postgres

DATA = 5
REFUSE = {"python": {"callable": "exports:refuse_hundreds", "path": str(adf.FLOWS_DIR)}}
SOURCE = {"table": "products", "batchSize": 250}


def good_rows(dbs: FlowDatabases) -> list[tuple[Any, ...]]:
    return [row for row in adf.exported(dbs.source_rows()) if row[0] % 100 != 0]


@pytest.fixture
def source_1000(dbs: FlowDatabases) -> FlowDatabases:
    with dbs.source() as conn:
        products.create_products(conn, 1000)
    with dbs.sink() as conn:
        products.create_products(conn, 0, table="exports")
    return dbs


def test_on_error_skip_counts_and_drops_failing_rows(source_1000: FlowDatabases) -> None:
    dbs = source_1000
    path = dbs.write("skip", source=SOURCE, sink={"table": "exports"}, transform=[REFUSE],
                     onError="skip")  # fmt: skip

    result = dbs.run(path)

    assert result.returncode == 0, result.output
    assert (result.summary["rowsFailed"], result.summary["rowsWritten"]) == (10, 990)
    assert dbs.sink_rows() == good_rows(dbs)


def test_on_error_dead_letter_keeps_each_failing_row_with_its_error(
    source_1000: FlowDatabases,
) -> None:
    dbs = source_1000
    path = dbs.write("letters", source=SOURCE, sink={"table": "exports"}, transform=[REFUSE],
                     onError="deadLetter", deadLetter={"table": "refused"})  # fmt: skip

    result = dbs.run(path)

    assert result.returncode == 0, result.output
    assert result.summary["rowsFailed"] == 10
    assert dbs.sink_rows() == good_rows(dbs)
    with dbs.sink() as conn:
        letters = [str(row) for row in conn.execute("SELECT * FROM refused").fetchall()]
    refused = []
    for letter in letters:  # each holds the row (as JSON) and the error that refused it
        match = re.search(r"refused product (\d+)\b", letter)
        assert match, letter
        assert f'"id": {match[1]},' in letter
        refused.append(int(match[1]))
    assert sorted(refused) == list(range(100, 1001, 100))


def test_on_error_fail_stops_at_the_failing_batch(source_1000: FlowDatabases) -> None:
    dbs = source_1000
    source = {**SOURCE, "cursor": {"column": "updated_at", "tieBreaker": "id"}, "batchSize": 50}
    path = dbs.write("fail", source=source, sink={"table": "exports"}, transform=[REFUSE])

    result = dbs.run(path)

    assert result.returncode == DATA, result.output
    assert "refused product 100" in result.summary["error"]
    assert dbs.sink_rows() == adf.exported(dbs.source_rows())[:50]  # the batch before id 100


def test_typed_schema_accepts_postgres_types_and_names_a_bad_field(dbs: FlowDatabases) -> None:
    with dbs.source() as conn:
        products.create_products(conn, 300)
    columns = [
        {"name": "id", "type": "integer", "nullable": False},
        {"name": "price", "type": "number"},
        {"name": "active", "type": "boolean"},
        {"name": "updated_at", "type": "datetime"},
    ]
    typed = dbs.write("typed", source=SOURCE, sink={"table": "exports"},
                      schema={"columns": columns})  # fmt: skip

    ok = dbs.run(typed)
    assert ok.returncode == 0, ok.output
    assert ok.summary["rowsWritten"] == 300

    wrong = [*columns, {"name": "sku", "type": "integer"}]
    mistyped = dbs.write("mistyped", source=SOURCE, sink={"table": "exports_bad"},
                         schema={"columns": wrong})  # fmt: skip
    failed = dbs.run(mistyped)

    assert failed.returncode == DATA, failed.output
    assert "sku" in failed.summary["error"]
    assert "integer" in failed.summary["error"]
