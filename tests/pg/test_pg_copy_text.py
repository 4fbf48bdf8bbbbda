"""COPY text read column by column and written back reusing the text of untouched values
(adf_core.connectors.pgcopy.CopyRows, the worker processes' codec), on a real server.

What must hold: the values read are the ones psycopg's own loaders give, for every type the
codec reads itself, NULLs and escapes included and in a session time zone other than UTC; rows
left alone come back byte for byte; changed, dropped, repeated and de-duplicated rows reach the
table as a step returned them; a type the codec does not read goes through psycopg's path; a
batch worked on in parts comes out as it would whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adf_core import runner, transforms
from adf_core.connectors import pgcopy
from adf_core.connectors.pgcopy import CopyRows, TextRows, text_tuples
from adf_core.connectors.sql import binary_copy_types
from adf_core.messages import Batch
from adf_core.spec import PythonStep, TransformStep
from tests.support import products

pytestmark = pytest.mark.postgres

COLUMNS = ("id", "name", "price", "ratio", "active", "born", "seen", "stamped")
TABLE = """CREATE TABLE things (
    id bigint PRIMARY KEY, name text, price numeric(12, 3), ratio float8, active boolean,
    born date, seen timestamp, stamped timestamptz)"""
ROWS = """INSERT INTO things VALUES
    (1, 'plain', 1.5, 0.25, true, '2024-02-29', '2024-01-01 10:00:00', '2024-07-01 12:00:00+00'),
    (2, E'tab\\there\\nnew line\\\\ back\\rslash', 'NaN', 'Infinity', false, '0999-12-31',
        '2024-01-01 10:00:00.123456', '2024-01-01 23:30:00.5+05:30'),
    (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (4, 'ünïcødé ☃', -0.001, '-Infinity', true, '2000-01-01', '1999-12-31 23:59:59',
        '1970-01-01 00:00:00+00'),
    (5, '\\N', 12345678.9, 'NaN', false, '2024-03-31', '2024-03-31 02:30:00',
        '2024-03-31 01:30:00+00')"""
SELECT = f"SELECT {', '.join(COLUMNS)} FROM things ORDER BY id"


@pytest.fixture(params=["UTC", "Europe/Berlin"])
def connections(
    request: pytest.FixtureRequest, new_database: Callable[[str], str]
) -> Iterator[tuple[psycopg.Connection[Any], psycopg.Connection[Any]]]:
    url = new_database("copytext").replace("+psycopg", "")
    with psycopg.connect(url, autocommit=True) as source, psycopg.connect(url) as sink:
        source.execute(TABLE)
        source.execute(ROWS)
        source.execute("CREATE TABLE target (LIKE things)")
        source.execute(f"SET TimeZone = '{request.param}'")
        yield source, sink


def comparable(rows: list[Any]) -> list[tuple[Any, ...]]:
    """Rows with each value's type, NaN as a string (NaN equals nothing, itself included)."""
    return [tuple(("NaN", type(v)) if v != v else (v, type(v)) for v in row) for row in rows]


def copy_out(conn: psycopg.Connection[Any], query: str = SELECT) -> bytes:
    with conn.cursor() as cur, cur.copy(f"COPY ({query}) TO STDOUT") as copy:
        return b"".join(bytes(part) for part in copy)


@pytest.fixture
def codec(connections: tuple[psycopg.Connection[Any], ...]) -> CopyRows:
    """The codec of the products query, from the source to the sink connection."""
    source, sink = connections
    built = CopyRows.build(source, SELECT, None, sink)
    assert built is not None
    return built


def read(codec: CopyRows, data: bytes) -> Batch:
    return Batch(COLUMNS, codec.parse(data))


def write(sink: psycopg.Connection[Any], batch: Batch) -> list[tuple[Any, ...]]:
    """COPY a formatted batch into the target table; the table's rows."""
    assert batch.raw is not None
    sink.execute("TRUNCATE target")
    statement = f"COPY target ({', '.join(batch.columns)}) FROM STDIN"
    with sink.cursor() as cur, cur.copy(statement) as copy:
        copy.write(batch.raw)
    return sink.execute("SELECT * FROM target ORDER BY id").fetchall()


def test_values_read_are_psycopgs(
    connections: tuple[psycopg.Connection[Any], ...], codec: CopyRows
) -> None:
    source = connections[0]

    rows = codec.parse(copy_out(source))

    assert isinstance(rows, TextRows)  # every column's type is one the codec reads itself
    expected = source.execute(SELECT).fetchall()
    assert comparable(rows) == comparable(expected)
    stamped = rows[1][COLUMNS.index("stamped")]
    assert stamped.utcoffset() == expected[1][COLUMNS.index("stamped")].utcoffset()
    assert rows[1][1] == "tab\there\nnew line\\ back\rslash" and rows[4][1] == "\\N"


def test_rows_left_alone_come_back_byte_for_byte(
    connections: tuple[psycopg.Connection[Any], ...], codec: CopyRows
) -> None:
    source, sink = connections
    data = copy_out(source)
    batch = read(codec, data)

    out = codec.format(batch.dicts(), batch, list(range(5)))

    assert out is not None and out.raw == data and out.raw_count == 5
    assert comparable(write(sink, out)) == comparable(source.execute(SELECT).fetchall())


def test_changed_dropped_and_repeated_rows_reach_the_table_as_returned(
    connections: tuple[psycopg.Connection[Any], ...], codec: CopyRows
) -> None:
    source, sink = connections
    batch = read(codec, copy_out(source))
    records = batch.dicts()
    records[0]["name"] = "new\tline\nand \\ back"  # a string that needs escapes
    records[0]["price"] = Decimal("2.250")
    records[1]["stamped"] = datetime(2030, 1, 1, tzinfo=UTC)
    records[1]["born"] = None
    records[3]["ratio"] = 1e-300
    copy = {**records[3], "id": 40, "active": None}  # a second row from row 4
    out_records, origin = [records[0], records[1], records[3], copy], [0, 1, 3, 3]  # 3, 5 gone

    out = codec.format(out_records, batch, origin)

    assert out is not None
    by_id = {r[0]: r for r in write(sink, out)}
    assert sorted(by_id) == [1, 2, 4, 40]
    assert by_id[1][1:3] == ("new\tline\nand \\ back", Decimal("2.250"))
    seen, changed = datetime(2024, 1, 1, 10, 0, 0, 123456), datetime(2030, 1, 1, tzinfo=UTC)
    assert by_id[2][5:] == (None, seen, changed)
    assert by_id[2][1] == "tab\there\nnew line\\ back\rslash"  # untouched: its text reused
    assert by_id[4][3] == 1e-300 and by_id[40][4] is None and by_id[40][3] == 1e-300


@pytest.fixture
def upsert_codec(connections: tuple[psycopg.Connection[Any], ...]) -> CopyRows:
    """The codec of an upsert keyed on id."""
    source, sink = connections
    built = CopyRows.build(source, SELECT, None, sink, keys=["id"])
    assert built is not None
    return built


def test_an_upsert_keeps_the_last_row_of_each_key(
    connections: tuple[psycopg.Connection[Any], ...], upsert_codec: CopyRows
) -> None:
    source, sink = connections
    codec = upsert_codec
    batch = read(codec, copy_out(source))
    records = batch.dicts()
    stale = {**records[0], "name": "stale"}

    out = codec.format([stale, *records], batch, [0, 0, 1, 2, 3, 4])

    assert out is not None and out.raw_unique and out.raw_count == 6
    rows = write(sink, out)
    assert [r[:2] for r in rows[:2]] == [(1, "plain"), (2, "tab\there\nnew line\\ back\rslash")]


def test_a_type_the_codec_does_not_read_goes_through_psycopg(
    connections: tuple[psycopg.Connection[Any], ...],
) -> None:
    source, sink = connections
    query = "SELECT id, gen_random_uuid() AS token, born FROM things ORDER BY id"
    codec = CopyRows.build(source, query, None, sink)
    assert codec is not None
    data = copy_out(source, query)

    rows = codec.parse(data)

    assert not isinstance(rows, TextRows) and len(rows) == 5
    assert rows[0][2] == date(2024, 2, 29) and len(str(rows[0][1])) == 36


def test_refused_rows_are_read_back_with_the_sinks_types(
    connections: tuple[psycopg.Connection[Any], ...],
) -> None:
    source, sink = connections
    data = copy_out(source)
    oids = [20, 25, 1700, 701, 16, 1082, 1114, 1184]

    rows = [values for _, values in text_tuples(data, sink, oids)]
    fallback = [values for _, values in text_tuples(b"x\tname\n", sink, [20, 25])]

    assert rows[0][:5] == [1, "plain", Decimal("1.500"), 0.25, True]
    assert rows[2] == [3, *[None] * 7] and rows[1][1] == "tab\there\nnew line\\ back\rslash"
    assert fallback == [["x", "name"]]  # not a bigint: the fields as text


def test_records_with_other_keys_go_through_psycopg(
    connections: tuple[psycopg.Connection[Any], ...], codec: CopyRows
) -> None:
    source, sink = connections
    batch = read(codec, copy_out(source))
    records = batch.dicts()
    del records[0]["ratio"]  # the first row lacks a column the others have

    out = codec.format(records, batch, list(range(5)))

    assert out is not None and out.raw_count == 5 and out.columns[-1] == "ratio"
    rows = write(sink, out)
    assert rows[0][3] is None and rows[3][3] == float("-inf")


def test_parts_end_at_row_ends(
    connections: tuple[psycopg.Connection[Any], ...],
    codec: CopyRows,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = copy_out(connections[0])  # row 2's name holds an escaped newline and tab
    monkeypatch.setattr(pgcopy, "PART_BYTES", 60)

    parts = codec.parts(data)

    assert len(parts) > 2 and b"".join(parts) == data
    assert all(part.endswith(b"\n") for part in parts)
    assert sum(len(codec.parse(part)) for part in parts) == 5


Edit = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def whole_and_in_halves(
    codec: CopyRows, columns: tuple[str, ...], data: bytes, edit: Edit = list, then: Edit = list
) -> tuple[Batch | None, list[Batch | None], list[list[dict[str, Any]]]]:
    """The batch's records (``edit`` applied) formatted whole; and its rows 1-2 and 3-5 formatted
    apart (``then`` applied to the second half too), with their records."""
    cut = data.index(b"\n", data.index(b"\n") + 1) + 1

    def formatted(part: bytes, also: Edit = list) -> tuple[Batch | None, list[dict[str, Any]]]:
        batch = Batch(columns, codec.parse(part))
        records = also(edit(batch.dicts()))
        return codec.format(records, batch, list(range(len(records)))), records

    halves = [formatted(data[:cut]), formatted(data[cut:], then)]
    return formatted(data)[0], [out for out, _ in halves], [records for _, records in halves]


def test_parts_join_into_the_batch_formatted_whole(
    connections: tuple[psycopg.Connection[Any], ...], codec: CopyRows
) -> None:
    source, sink = connections
    data = copy_out(source)
    # A uuid column is not one the codec reads: its rows come as tuples, formatted as binary
    # COPY once a step has dropped the uuid (binary COPY takes the other two as they are).
    query = "SELECT id, gen_random_uuid() AS token, born FROM things ORDER BY id"
    tokens = CopyRows.build(source, query, None, sink,
                            partial(binary_copy_types, {"id": 20, "born": 1082}))  # fmt: skip
    assert tokens is not None
    token_data = copy_out(source, query)
    columns = ("id", "token", "born")

    def untokened(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"id": r["id"], "born": r["born"]} for r in records]

    def born_as_text(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**r, "born": str(r["born"])} for r in records]  # a str: COPY text

    text, text_halves, text_records = whole_and_in_halves(codec, COLUMNS, data)
    binary, binary_halves, binary_records = whole_and_in_halves(tokens, columns, token_data,
                                                                untokened)  # fmt: skip
    _, mixed, mixed_records = whole_and_in_halves(tokens, columns, token_data, untokened,
                                                  born_as_text)  # fmt: skip

    joined_text = codec.join(text_halves, text_records)
    joined_binary = tokens.join(binary_halves, binary_records)
    assert text is not None and joined_text is not None and joined_text.raw == text.raw == data
    assert binary is not None and joined_binary is not None and joined_binary.raw == binary.raw
    assert joined_binary.raw is not None and joined_binary.raw_count == 5
    assert joined_binary.raw.startswith(pgcopy.BINARY_SIGNATURE)
    sink.execute("CREATE TABLE days (id bigint, born date)")
    with sink.cursor() as cur, cur.copy("COPY days FROM STDIN (FORMAT binary)") as copy:
        copy.write(joined_binary.raw)
    assert sink.execute("SELECT * FROM days ORDER BY id").fetchall() == [
        (r["id"], r["born"]) for r in untokened(Batch(columns, tokens.parse(token_data)).dicts())
    ]
    assert mixed[0] is not None and mixed[0].raw and mixed[1] is not None and mixed[1].raw
    assert mixed[0].raw.startswith(pgcopy.BINARY_SIGNATURE)  # binary, then text: no common form
    assert not mixed[1].raw.startswith(pgcopy.BINARY_SIGNATURE)
    assert tokens.join(mixed, mixed_records) is None  # the caller writes the records as rows
    assert codec.join([text_halves[0], None], text_records) is None


def test_an_upsert_key_in_two_parts_leaves_the_batch_to_the_sinks_de_duplication(
    connections: tuple[psycopg.Connection[Any], ...], upsert_codec: CopyRows
) -> None:
    codec = upsert_codec
    batch = read(codec, copy_out(connections[0]))
    first, second = batch.dicts()[:3], batch.dicts()[3:]
    again = {**first[0], "name": "again"}

    def formatted(*parts: list[dict[str, Any]]) -> Batch | None:
        outs = [codec.format(part, batch, [r["id"] - 1 for r in part]) for part in parts]
        return codec.join(outs, list(parts))

    disjoint, shared = formatted(first, second), formatted(first, [*second, again])

    assert disjoint is not None and disjoint.raw_unique and disjoint.raw_count == 5
    assert shared is not None and not shared.raw_unique and shared.raw_count == 6


def test_a_batch_in_parts_names_failed_rows_by_their_place_in_the_whole_batch(
    connections: tuple[psycopg.Connection[Any], ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, sink = connections
    products.create_products(source, 1000)
    query = f"SELECT {', '.join(products.COLUMNS)} FROM products ORDER BY id"
    codec = CopyRows.build(source, query, None, sink)
    assert codec is not None
    data = copy_out(source, query)
    flows = str(Path(__file__).with_name("flows"))
    step = PythonStep(callable="worker_steps:refuse_one", path=flows)  # refuses id 600
    steps = transforms.plan([TransformStep(python=step)], products.COLUMNS,
                            run_start=datetime.now(UTC), push_down=False)  # fmt: skip
    outputs = {}
    for part_bytes, keys in [(len(data), ()), (4096, ()), (4096, ("id",))]:
        monkeypatch.setattr(pgcopy, "PART_BYTES", part_bytes)
        batch = Batch(products.COLUMNS, [], key_columns=keys, raw=data, raw_count=1000)

        out, failures = runner._work_raw(codec, None, steps, batch)

        outputs[part_bytes, keys] = out.raw
        assert [f.key for f in failures] == ["id=600" if keys else "#600 of its batch"]
        assert out.raw_count == 999 and len(codec.parts(data)) == round(len(data) / part_bytes)
    assert len(set(outputs.values())) == 1  # the same COPY data, in one pass or in parts
