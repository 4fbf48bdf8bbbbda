"""The hand-written ways of moving the same rows that the engine is measured against."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pandas as pd
from sqlalchemy import MetaData, Table, create_engine, insert, text

from bench.data import SINK_DB, SOURCE_DB
from bench.transforms import SOURCE_SELECT, to_export
from tests.support.postgres import PostgresServer, find_binary

BATCH = 10_000
PANDAS_INSERT_CHUNK = 1_000  # rows per multi-row INSERT (PostgreSQL caps parameters at 65535)


def _psql(
    server: PostgresServer, database: str, *commands: str
) -> tuple[list[str], dict[str, str]]:
    """A psql command line running `commands` in one session, and its environment."""
    psql = find_binary("psql")
    if psql is None:
        raise RuntimeError("psql not found (install Debian's postgresql-client)")
    argv = [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for command in commands:
        argv += ["-c", command]
    return argv, {**os.environ, **server.libpq_env(database)}


def psql_pipe(server: PostgresServer, select: str, *sink_commands: str) -> None:
    """`psql \\copy (select) to stdout | psql <sink_commands>`, the fastest plain-SQL route."""
    out_argv, out_env = _psql(server, SOURCE_DB, f"\\copy ({select}) to stdout")
    in_argv, in_env = _psql(server, SINK_DB, *sink_commands)
    producer = subprocess.Popen(out_argv, env=out_env, stdout=subprocess.PIPE)
    assert producer.stdout is not None
    consumer = subprocess.run(in_argv, env=in_env, stdin=producer.stdout, capture_output=True)
    producer.stdout.close()
    if producer.wait() != 0 or consumer.returncode != 0:
        raise RuntimeError(f"psql pipe failed: {consumer.stderr.decode(errors='replace')}")


def pipe_copy(server: PostgresServer, select: str, target: str) -> None:
    """Append: COPY straight into the target."""
    psql_pipe(server, select, f"\\copy {target} from pstdin")


def pipe_upsert(
    server: PostgresServer, select: str, target: str, key: str, columns: list[str]
) -> None:
    """Upsert: COPY into a staging table, then one INSERT … ON CONFLICT DO UPDATE."""
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != key)
    psql_pipe(
        server,
        select,
        f"CREATE TEMP TABLE stage (LIKE {target})",
        "\\copy stage from pstdin",
        f"INSERT INTO {target} SELECT * FROM stage ON CONFLICT ({key}) DO UPDATE SET {updates}",
    )


def sqlalchemy_executemany(source_url: str, sink_url: str, target: str) -> None:
    """SQLAlchemy streaming read, the Python transform, executemany (insertmanyvalues) per batch."""
    source, sink = create_engine(source_url), create_engine(sink_url)
    try:
        table = Table(target, MetaData(), autoload_with=sink)
        with source.connect() as src, sink.connect() as dst:
            result = src.execution_options(yield_per=BATCH).execute(text(SOURCE_SELECT))
            for part in result.mappings().partitions():
                dst.execute(insert(table), [to_export(dict(row)) for row in part])
                dst.commit()
    finally:
        source.dispose()
        sink.dispose()


def pandas_to_sql(source_url: str, sink_url: str, target: str, rows: int) -> None:
    """pandas read_sql in chunks, the transform vectorised, to_sql(method="multi")."""
    source, sink = create_engine(source_url), create_engine(sink_url)
    query = text(f"{SOURCE_SELECT} ORDER BY id LIMIT :rows")
    try:
        with source.connect() as src, sink.connect() as dst:
            for chunk in pd.read_sql(query, src, params={"rows": rows}, chunksize=BATCH):
                chunk["sku"] = chunk["sku"].str.upper()
                chunk.to_sql(
                    target,
                    dst,
                    if_exists="append",
                    index=False,
                    method="multi",
                    chunksize=PANDAS_INSERT_CHUNK,
                )
                dst.commit()
    finally:
        source.dispose()
        sink.dispose()


def sqlite_executemany(source: Path, sink: Path, target: str) -> None:
    """Plain sqlite3: fetchmany from the source, executemany into the sink, commit per batch."""
    src, dst = sqlite3.connect(source), sqlite3.connect(sink)
    try:
        cursor = src.execute(SOURCE_SELECT)
        insert_sql = f'INSERT INTO "{target}" VALUES (?, ?, ?, ?, ?, ?, ?)'
        while batch := cursor.fetchmany(BATCH):
            dst.executemany(insert_sql, batch)
            dst.commit()
    finally:
        src.close()
        dst.close()
