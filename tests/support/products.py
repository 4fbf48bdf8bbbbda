"""The `products` table that the PostgreSQL tests and the benchmark move around.

One definition of the shape (id, name, sku, price, category, active, updated_at) and of the
generated rows, so that tests and bench agree on the data. Three consecutive ids share one
`updated_at`, which puts ties at the watermark on every batch edge of an incremental read.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

COLUMNS = ("id", "name", "sku", "price", "category", "active", "updated_at")

CREATE_TABLE = sql.SQL(
    """CREATE TABLE {table} (
        id bigint PRIMARY KEY,
        name text NOT NULL,
        sku text NOT NULL,
        price numeric(10, 2) NOT NULL,
        category text NOT NULL,
        active boolean NOT NULL,
        updated_at timestamptz NOT NULL
    )"""
)

# Deterministic rows for ids first..last, computed by the server (fast even for millions).
GENERATE_ROWS = sql.SQL(
    """INSERT INTO {table} (id, name, sku, price, category, active, updated_at)
    SELECT g,
           'Product ' || g,
           'sku-' || lpad(g::text, 8, '0'),
           round(1 + (g %% 10000) / 100.0, 2),
           (ARRAY['books', 'games', 'garden', 'music', 'tools'])[1 + g %% 5],
           g %% 7 <> 0,
           timestamptz '2024-01-01 00:00:00+00' + (g / 3) * interval '1 second'
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g"""
)


def create_products(
    conn: psycopg.Connection[Any], rows: int, *, table: str = "products", first: int = 1
) -> None:
    """Create `table` and fill it with `rows` generated products starting at id `first`."""
    conn.execute(CREATE_TABLE.format(table=sql.Identifier(table)))
    add_products(conn, first, first + rows - 1, table=table)


def add_products(
    conn: psycopg.Connection[Any], first: int, last: int, *, table: str = "products"
) -> None:
    """Insert the generated products with ids first..last (inclusive)."""
    conn.execute(GENERATE_ROWS.format(table=sql.Identifier(table)), {"first": first, "last": last})


def fetch_rows(
    conn: psycopg.Connection[Any], table: str, columns: tuple[str, ...] = COLUMNS
) -> list[tuple[Any, ...]]:
    """All rows of `table` in a stable order (by the first column, then the rest)."""
    query = sql.SQL("SELECT {cols} FROM {table} ORDER BY {order}").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        table=sql.Identifier(table),
        order=sql.SQL(", ").join(sql.Literal(i + 1) for i in range(len(columns))),
    )
    return conn.execute(query).fetchall()
