"""The libpq-level COPY TO reader (adf_core.connectors.pgcopy) on a real server.

Raw runs read their rows through it: batches must hold exactly the rows of the COPY (in binary,
each batch a whole COPY stream that a sink reads alone), an error in the middle of the statement
must surface as the driver's exception, and a reader closed early must leave the connection idle
in its transaction, ready for the caller's rollback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest

from adf_core.connectors.pgcopy import binary_fields, copy_out_batches

pytestmark = pytest.mark.postgres
ROWS = "SELECT g, E'tab\\there' || g, g % 3 = 0 FROM generate_series(1, 25) g ORDER BY g"


@pytest.fixture
def conn(new_database: Callable[[str], str]) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(new_database("copy").replace("+psycopg", "")) as connection:
        connection.execute("SELECT 1")  # a transaction is open, as the source's is
        yield connection


def test_batches_hold_every_row_once_in_order(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    batches = list(copy_out_batches(conn, ROWS, 10))

    assert [batch.rows for batch in batches] == [10, 10, 5]
    lines = b"".join(batch.data for batch in batches).splitlines()
    assert [batch.data.count(b"\n") for batch in batches] == [10, 10, 5]
    assert lines[0] == b"1\ttab\\there1\tf"
    assert lines[-1] == b"25\ttab\\there25\tf"
    assert [batch.last for batch in batches] == [lines[9] + b"\n", lines[19] + b"\n",
                                                  lines[24] + b"\n"]  # fmt: skip
    with conn.cursor() as cur, cur.copy(f"COPY ({ROWS}) TO STDOUT") as copy:
        expected = b"".join(bytes(row) for row in copy)
    assert b"".join(batch.data for batch in batches) == expected
    assert conn.execute("SELECT 2").fetchone() == (2,)  # the connection is usable afterwards


@pytest.mark.parametrize("size", [1, 7, 25, 100])
def test_binary_batches_are_whole_copy_streams_of_their_rows(
    conn: psycopg.Connection[tuple[object, ...]], size: int
) -> None:
    conn.execute("CREATE TEMP TABLE copied (n int, note text, third bool)")

    batches = list(copy_out_batches(conn, ROWS, size, binary=True))

    assert [batch.rows for batch in batches] == [min(size, 25 - i) for i in range(0, 25, size)]
    for batch in batches:  # each one goes into a table on its own, as a sink writes it
        assert batch.data.startswith(b"PGCOPY\n\xff\r\n\x00") and batch.data.endswith(b"\xff\xff")
        assert batch.data.endswith(batch.last + b"\xff\xff")
        with conn.cursor() as cur, cur.copy("COPY copied FROM STDIN (FORMAT binary)") as copy:
            copy.write(batch.data)
    assert conn.execute("SELECT * FROM copied").fetchall() == conn.execute(ROWS).fetchall()
    last = [binary_fields(batch.last)[0][0] for batch in batches]
    assert last == [min(i + size, 25).to_bytes(4, "big") for i in range(0, 25, size)]


@pytest.mark.parametrize("binary", [False, True])
def test_an_empty_result_yields_nothing(
    conn: psycopg.Connection[tuple[object, ...]], binary: bool
) -> None:
    assert list(copy_out_batches(conn, "SELECT 1 WHERE false", 10, binary=binary)) == []
    assert conn.execute("SELECT 3").fetchone() == (3,)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("failing_row", [1, 50])
def test_an_error_mid_statement_is_the_drivers_exception(
    conn: psycopg.Connection[tuple[object, ...]], binary: bool, failing_row: int
) -> None:
    failing = f"SELECT 10 / ({failing_row} - g) FROM generate_series(1, 100000) g"

    with pytest.raises(psycopg.errors.DivisionByZero):
        for _ in copy_out_batches(conn, failing, 7, binary=binary):
            pass

    conn.rollback()
    assert conn.execute("SELECT 4").fetchone() == (4,)


def test_a_refused_statement_is_the_drivers_exception(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable):
        list(copy_out_batches(conn, "SELECT * FROM missing", 7))
    conn.rollback()
    assert conn.execute("SELECT 5").fetchone() == (5,)


@pytest.mark.parametrize("binary", [False, True])
def test_closing_early_cancels_and_leaves_the_connection_usable(
    conn: psycopg.Connection[tuple[object, ...]], binary: bool
) -> None:
    many = "SELECT g, repeat('x', 200) FROM generate_series(1, 2000000) g"
    reader = copy_out_batches(conn, many, 1000, binary=binary)

    batch = next(reader)
    reader.close()

    assert batch.rows == 1000
    assert batch.data.startswith(b"PGCOPY\n\xff\r\n\x00" if binary else b"1\t")
    conn.rollback()
    assert conn.execute("SELECT 6").fetchone() == (6,)
