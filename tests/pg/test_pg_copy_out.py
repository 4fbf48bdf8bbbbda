"""The libpq-level COPY TO reader (adf_core.connectors.pgcopy) on a real server.

Raw runs read their rows through it: batches must hold exactly the rows of the COPY, an error
in the middle of the statement must surface as the driver's exception, and a reader closed
early must leave the connection idle in its transaction, ready for the caller's rollback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest

from adf_core.connectors.pgcopy import copy_out_batches

pytestmark = pytest.mark.postgres
ROWS = "SELECT g, E'tab\\there' || g, g % 3 = 0 FROM generate_series(1, 25) g ORDER BY g"


@pytest.fixture
def conn(new_database: Callable[[str], str]) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(new_database("copy").replace("+psycopg", "")) as connection:
        connection.execute("SELECT 1")  # a transaction is open, as the source's is
        yield connection


def test_batches_hold_every_row_once_in_order(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    batches = list(copy_out_batches(conn, f"COPY ({ROWS}) TO STDOUT", 10))

    assert [count for _, count in batches] == [10, 10, 5]
    lines = b"".join(data for data, _ in batches).splitlines()
    assert [data.count(b"\n") for data, _ in batches] == [10, 10, 5]
    assert lines[0] == b"1\ttab\\there1\tf"
    assert lines[-1] == b"25\ttab\\there25\tf"
    with conn.cursor() as cur, cur.copy(f"COPY ({ROWS}) TO STDOUT") as copy:
        expected = b"".join(bytes(row) for row in copy)
    assert b"".join(data for data, _ in batches) == expected
    assert conn.execute("SELECT 2").fetchone() == (2,)  # the connection is usable afterwards


def test_an_empty_result_yields_nothing(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    assert list(copy_out_batches(conn, "COPY (SELECT 1 WHERE false) TO STDOUT", 10)) == []
    assert conn.execute("SELECT 3").fetchone() == (3,)


def test_an_error_mid_statement_is_the_drivers_exception(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    failing = "COPY (SELECT 10 / (50 - g) FROM generate_series(1, 100000) g) TO STDOUT"

    with pytest.raises(psycopg.errors.DivisionByZero):
        for _ in copy_out_batches(conn, failing, 7):
            pass

    conn.rollback()
    assert conn.execute("SELECT 4").fetchone() == (4,)


def test_a_refused_statement_is_the_drivers_exception(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable):
        list(copy_out_batches(conn, "COPY (SELECT * FROM missing) TO STDOUT", 7))
    conn.rollback()
    assert conn.execute("SELECT 5").fetchone() == (5,)


def test_closing_early_cancels_and_leaves_the_connection_usable(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    many = "COPY (SELECT g, repeat('x', 200) FROM generate_series(1, 2000000) g) TO STDOUT"
    reader = copy_out_batches(conn, many, 1000)

    data, count = next(reader)
    reader.close()

    assert count == 1000 and data.startswith(b"1\t")
    conn.rollback()
    assert conn.execute("SELECT 6").fetchone() == (6,)
