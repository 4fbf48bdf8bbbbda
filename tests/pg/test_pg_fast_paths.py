"""The PostgreSQL fast paths of the SQL connector, on a real server.

Rows that no Python step touches pass as raw COPY data (only each batch's last row is parsed, for
the watermark): binary when every column has its sink column's type, text otherwise; batches
from Python go as binary COPY when their first row allows it, and are redone as text when a later
value does not fit. tests/pg covers the engine on PostgreSQL broadly; these pin the edges of the
fast paths: escapes in COPY text, `%` in SQL, mixed value types, types that differ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.unit.support import Result, flow_manifest

pytestmark = pytest.mark.postgres
Run = Callable[..., Result]
TABLE = (
    "CREATE TABLE items "
    "(k text PRIMARY KEY, at timestamptz NOT NULL, price numeric(10, 2), note text)"
)
ROWS = """INSERT INTO items
SELECT E'key\\t' || g || E'\\\\x\\n',
       timestamptz '2024-01-01 00:00+00' + (g / 4) * interval '1 minute',
       g * 1.5, CASE WHEN g % 5 = 0 THEN NULL ELSE E'50% off\\nline two' END
FROM generate_series(1, 60) g"""


@pytest.fixture
def databases(new_database: Callable[[str], str]) -> tuple[str, str]:
    urls = new_database("src"), new_database("dst")
    for url in urls:
        with psycopg.connect(url.replace("+psycopg", "")) as conn:
            conn.execute(TABLE)
    with psycopg.connect(urls[0].replace("+psycopg", "")) as conn:
        conn.execute(ROWS)
    return urls


def rows(url: str, sql: str = "SELECT * FROM items ORDER BY at, k") -> list[tuple[Any, ...]]:
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        return conn.execute(sql).fetchall()


def source(url: str, **extra: Any) -> dict[str, Any]:
    cursor = {"column": "at", "tieBreaker": "k"}
    return {"url": {"value": url}, "table": "items", "cursor": cursor, "batchSize": 7, **extra}


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_raw_copy_keeps_escapes_and_resumes_after_a_text_tie_breaker(
    run_flow: Run, databases: tuple[str, str], mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    src, dst = databases
    sink = {"url": {"value": dst}, "table": "items", "mode": mode, "keys": ["k"]}
    if mode == "append":
        sink.pop("keys")
    manifest = flow_manifest(source(src, where="note LIKE '50%' OR note IS NULL"), sink)

    with caplog.at_level(logging.INFO, logger="adf.sql"):
        first = run_flow(manifest)
    with psycopg.connect(src.replace("+psycopg", "")) as conn:
        late = "E'zz\\\\late', timestamptz '2024-01-01 00:15+00', 1, '50% late'"
        conn.execute(f"INSERT INTO items VALUES ({late})")
    second = run_flow(manifest)
    third = run_flow(manifest)

    assert first.exit_code == 0, first.summary
    assert "rows pass between the databases as binary COPY" in caplog.messages
    assert (first.summary["rowsRead"], second.summary["rowsRead"]) == (60, 1)
    assert third.summary["rowsRead"] == 0
    assert rows(dst) == rows(src)
    assert rows(dst)[0][0] == "key\t1\\x\n"


def test_raw_copy_between_other_column_types_goes_as_text(
    run_flow: Run, databases: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A float column takes the numeric values as their text, which its server reads."""
    src, dst = databases
    with psycopg.connect(dst.replace("+psycopg", "")) as conn:
        conn.execute("ALTER TABLE items ALTER COLUMN price TYPE double precision")
    sink = {"url": {"value": dst}, "table": "items", "mode": "upsert", "keys": ["k"]}

    with caplog.at_level(logging.INFO, logger="adf.sql"):
        result = run_flow(flow_manifest(source(src), sink))

    assert result.exit_code == 0, result.summary
    assert "rows pass between the databases as text COPY" in caplog.messages
    as_numeric = "SELECT k, at, price::numeric(10, 2), note FROM items ORDER BY at, k"
    assert rows(dst, as_numeric) == rows(src)


def test_raw_copy_backfill_window_and_row_limit(run_flow: Run, databases: tuple[str, str]) -> None:
    src, dst = databases
    sink = {"url": {"value": dst}, "table": "items", "mode": "upsert", "keys": ["k"]}
    window = run_flow(
        flow_manifest(source(src), sink),
        "--window-from",
        "2024-01-01T00:02:00+00:00",
        "--window-to",
        "2024-01-01T00:04:00+00:00",
    )
    assert window.summary["rowsRead"] == 8
    limited = flow_manifest(source(src), sink, maxRowsPerRun=25)
    assert [run_flow(limited).summary["rowsRead"] for _ in range(4)] == [25, 25, 10, 0]
    assert rows(dst) == rows(src)


def test_binary_copy_falls_back_to_text_for_a_value_of_another_type(
    run_flow: Run, databases: tuple[str, str], tmp_path: Path
) -> None:
    (tmp_path / "mixed_flow.py").write_text(
        "def f(row):\n"
        "    n = int(row['price'] * 2 / 3)\n"
        "    if n % 3 == 0:\n"
        "        row['price'] = n  # an int for a numeric column: binary COPY refuses it\n"
        "    if n == 7:\n"
        "        row['at'] = '2030-01-01T00:00:00+00:00'  # a string for a timestamptz\n"
        "    return row\n"
    )
    src, dst = databases
    step = {"python": {"callable": "mixed_flow:f", "path": str(tmp_path)}}
    result = run_flow(
        flow_manifest(
            source(src, batchSize=8), {"url": {"value": dst}, "table": "items"}, transform=[step]
        )
    )
    assert result.exit_code == 0, result.summary
    stored = {r[0]: r for r in rows(dst)}
    assert len(stored) == 60
    assert str(stored["key\t3\\x\n"][2]) == "3.00"
    assert str(stored["key\t4\\x\n"][2]) == "6.00"
    assert stored["key\t7\\x\n"][1].year == 2030
