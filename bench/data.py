"""The benchmark's data: N products in PostgreSQL and in SQLite, and the empty target tables."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from psycopg import sql

from tests.support import products
from tests.support.postgres import PostgresServer

SOURCE_DB = "bench_source"
SINK_DB = "bench_sink"

# The declarative flow renames id, drops active and sets a constant column.
DECLARATIVE_DDL = sql.SQL(
    """CREATE TABLE {table} (
        product_id bigint PRIMARY KEY,
        name text NOT NULL,
        sku text NOT NULL,
        price numeric(10, 2) NOT NULL,
        category text NOT NULL,
        updated_at timestamptz NOT NULL,
        origin text NOT NULL
    )"""
)

SQLITE_DDL = """CREATE TABLE {table} (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    sku TEXT NOT NULL,
    price NUMERIC NOT NULL,
    category TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    updated_at DATETIME NOT NULL
)"""

# The same rows as tests.support.products.GENERATE_ROWS, in SQLite's dialect.
SQLITE_ROWS = """WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?)
INSERT INTO products
SELECT n,
       'Product ' || n,
       printf('sku-%08d', n),
       round(1 + (n % 10000) / 100.0, 2),
       json_extract('["books","games","garden","music","tools"]', '$[' || (n % 5) || ']'),
       n % 7 <> 0,
       datetime('2024-01-01 00:00:00', '+' || (n / 3) || ' seconds')
FROM g"""


def build_postgres(server: PostgresServer, rows: int) -> tuple[str, str]:
    """Fresh source (with `rows` products, analysed) and sink databases; returns their URLs."""
    source_url = server.create_database(SOURCE_DB)
    sink_url = server.create_database(SINK_DB)
    with server.connect(SOURCE_DB) as conn:
        products.create_products(conn, rows)
        # The index an incremental flow on (updated_at, id) needs; every real user would add it.
        conn.execute("CREATE INDEX products_cursor ON products (updated_at, id)")
        conn.execute("VACUUM ANALYZE products")
    return source_url, sink_url


def recreate_target(server: PostgresServer, table: str, *, declarative: bool = False) -> None:
    """An empty target table with the products shape (or the declarative flow's shape).

    Not autovacuumed: a million rows written by one measurement made the server vacuum them at
    some random point of a later one (seen in pg_stat_activity during a run), which moved engine
    and baseline figures alike. The source table is vacuumed and analysed once, when it is built.
    """
    ddl = DECLARATIVE_DDL if declarative else products.CREATE_TABLE
    name = sql.Identifier(table)
    with server.connect(SINK_DB) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(name))
        conn.execute(ddl.format(table=name))
        conn.execute(sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = off)").format(name))


def count_rows(server: PostgresServer, table: str) -> int:
    with server.connect(SINK_DB) as conn:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        count: int = conn.execute(query).fetchall()[0][0]
        return count


def forget_watermark(server: PostgresServer, flow_id: str) -> None:
    """Drop a flow's committed watermark, so that a repeated run reads every row again."""
    with server.connect(SINK_DB) as conn:
        if conn.execute("SELECT to_regclass('adf_state')").fetchone() != (None,):
            conn.execute("DELETE FROM adf_state WHERE flow_id = %s", (flow_id,))


def checkpoint(server: PostgresServer) -> None:
    """Flush dirty pages so that one measurement does not pay for the previous one's writes."""
    with server.connect() as conn:
        conn.execute("CHECKPOINT")


def build_sqlite(path: Path, rows: int) -> None:
    """A SQLite products file with the same rows as the PostgreSQL source."""
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute(SQLITE_DDL.format(table="products"))
        conn.execute(SQLITE_ROWS, (rows,))
        conn.execute("CREATE INDEX products_cursor ON products (updated_at, id)")
    conn.close()


def recreate_sqlite_target(path: Path, table: str) -> None:
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute(SQLITE_DDL.format(table=table))
    conn.close()


def count_sqlite_rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        count: int = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    conn.close()
    return count
