"""SQL source and sink on SQLAlchemy 2, with per-dialect fast paths behind one API.

Reading streams (a psycopg named cursor on PostgreSQL, SQLAlchemy ``stream_results`` elsewhere),
in ``(cursor, tieBreaker)`` order, from a composite watermark compared as a row value, so rows
sharing a cursor value are never skipped at a batch edge. A table's single-column primary key is
the implicit tie-breaker; with none at all, a batch's watermark stops before a group of equal
cursor values it may have cut, and a run ends at a group's end (at least once, never skipped;
rows arriving later with the very cursor value already committed need ``lag``).

Writing uses ``COPY`` (into a temporary staging table for upserts; binary when the values allow)
on PostgreSQL, ``executemany`` on SQLite and SQLAlchemy's insertmanyvalues elsewhere; each batch,
its dead letters and the watermark row in ``adf_state`` commit in one transaction. ``replace``
fills ``<table>__adf_new`` and swaps it in at the end in one transaction, so readers see the old
table or the new one, never a half-written one. When no Python step touches the rows and the sink
table exists, rows pass between two PostgreSQL databases as raw ``COPY`` text and between two
SQLite files as stored values, with no conversion per row.

SQLite connections run with explicit ``BEGIN`` (the sqlite3 module would otherwise auto-commit
DDL, which would break the atomic swap). A SQLite file used as a source must not also be the sink
while a run streams from it (use WAL mode or two files).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    Time,
    UniqueConstraint,
    and_,
    column,
    create_engine,
    delete,
    event,
    insert,
    inspect,
    literal,
    null,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, NoSuchTableError
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause
from sqlalchemy.types import TypeEngine

from adf_core.connectors import register
from adf_core.connectors.base import (
    Checkpoint,
    Constant,
    DeadLetters,
    InTurn,
    RawCodec,
    ReadRequest,
    Sink,
    Source,
    WriteConflict,
    WriteResult,
)
from adf_core.errors import AdfError, ConnectionFailure, DataError, SpecError
from adf_core.messages import Batch, Row, RowFailure, Watermark, last_per_key, row_key, to_json
from adf_core.spec import SqlSinkSpec, SqlSourceSpec

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("adf.sql")
STATE_TABLE = "adf_state"
COPY_TEXT = "postgresql-copy-text"  # raw batch format: COPY text rows, then the client encoding
SQLITE_NATIVE = "sqlite-native"  # raw batch format: rows of SQLite's stored values


BinaryTypes = Callable[[Sequence[str], Sequence[Row]], "list[int] | None"]


class NativeRows(list[Any]):
    """Rows as SQLite stores them (dates as text…): written back without any conversion."""


STAGING_SUFFIX = "__adf_new"


# --- connections and errors ----------------------------------------------------------------------


def masked(url: URL) -> str:
    """The URL as it may be shown: the password replaced by ***."""
    return url.render_as_string(hide_password=True)


def parse_url(text_value: str, field: str) -> URL:
    """Parse a database URL; PostgreSQL URLs without a driver use psycopg 3."""
    try:
        url = make_url(text_value)
    except ArgumentError:
        raise SpecError(f"{field}: not a database URL (expected dialect+driver://…)") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def connect(url: URL, role: str) -> tuple[Engine, Connection]:
    """Open one connection; failures become ConnectionFailure with the masked URL."""
    if url.get_backend_name() == "sqlite" and role == "source":
        path = url.database or ""
        if (
            path not in ("", ":memory:")
            and not path.startswith("file:")
            and not os.path.exists(path)
        ):
            raise ConnectionFailure(f"the {role} database {masked(url)} does not exist")
    # The runner reads in a thread of its own; SQLite connections may cross threads (one at a time).
    args = {"check_same_thread": False} if url.get_backend_name() == "sqlite" else {}
    try:
        engine = create_engine(url, poolclass=NullPool, connect_args=args)
    except (NoSuchModuleError, ArgumentError, ImportError) as exc:
        raise SpecError(
            f"spec.{role}.sql.url: unsupported database URL {masked(url)}: {exc}"
        ) from None
    if engine.dialect.name == "sqlite":
        _explicit_sqlite_transactions(engine)
    try:
        return engine, engine.connect()
    except DBAPIError as exc:
        engine.dispose()
        raise ConnectionFailure(
            f"cannot connect to the {role} database {masked(url)}: {_reason(exc)}"
        ) from None


def _explicit_sqlite_transactions(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")


def _deadlock(exc: BaseException) -> bool:
    """PostgreSQL's deadlock error (SQLSTATE 40P01): the transaction may simply be run again."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return getattr(orig, "sqlstate", None) == "40P01"


def _reason(exc: BaseException) -> str:
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(orig).strip().splitlines() if line.strip()]
    return " ".join(lines[:2]) or type(orig).__name__


def translate(exc: BaseException, engine: Engine, what: str) -> AdfError:
    """Map a driver error: constraint or value problems are data errors, the rest connection."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    dbapi = engine.dialect.dbapi
    data_kinds = tuple(
        k for k in (getattr(dbapi, "IntegrityError", None), getattr(dbapi, "DataError", None)) if k
    )
    if data_kinds and isinstance(orig, data_kinds):
        return DataError(f"{what}: {_reason(orig)}")
    return ConnectionFailure(f"{what}: {_reason(orig)}")


def _dbapi_errors(engine: Engine) -> tuple[type[BaseException], ...]:
    base = getattr(engine.dialect.dbapi, "Error", None)
    return (DBAPIError, base) if isinstance(base, type) else (DBAPIError,)


def _psycopg(conn: Connection) -> psycopg.Connection[Any]:
    """The driver connection under SQLAlchemy, for COPY and named cursors (same transaction)."""
    return cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)


def _in_process(engine: Engine | None) -> bool:
    """SQLite: the database is a library working in this process."""
    return engine is not None and engine.dialect.name == "sqlite"


def _split_name(name: str) -> tuple[str | None, str]:
    schema, _, table = name.rpartition(".")
    return schema or None, table


def _reflect(
    conn: Connection, name: str, *, key: bool = False, whole: bool = False
) -> Table | None:
    """The table's columns (types, nullability) and, if ``key``, its primary key; None when it
    does not exist.

    ``whole`` also reflects its other constraints and indexes (what a replace copies). Every
    catalog query costs a run's start 6-12 ms (measured), so only what is used is asked for:
    columns and key take two queries instead of eight, columns alone one.
    """
    schema, table = _split_name(name)
    try:
        if whole:
            return Table(table, MetaData(), schema=schema, autoload_with=conn)
        inspector = inspect(conn)
        columns = inspector.get_columns(table, schema)
        primary = (
            inspector.get_pk_constraint(table, schema).get("constrained_columns") or []
            if key
            else []
        )
    except NoSuchTableError:
        return None
    if not columns:
        return None
    return Table(
        table,
        MetaData(),
        *[Column(c["name"], c["type"], nullable=c["nullable"]) for c in columns],
        *([PrimaryKeyConstraint(*primary)] if primary else []),
        schema=schema,
    )


# --- source --------------------------------------------------------------------------------------


class SqlSource(Source[SqlSourceSpec]):
    """Reads a table (with optional where/columns) or a query, streaming, in cursor order."""

    def __init__(self, spec: SqlSourceSpec) -> None:
        super().__init__(spec)
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._from: FromClause | None = None
        self._columns: tuple[str, ...] = ()
        self._order: list[str] = []
        self._tie: str | None = None

    def open(self) -> None:
        spec = self.spec
        self.url = parse_url(spec.url.resolve(), "spec.source.sql.url")
        self._engine, self._conn = connect(self.url, "source")
        with self._conn.begin():
            if spec.table is not None:
                # its primary key only serves as the tie-breaker (and row key) the spec can name
                unnamed = spec.cursor is None or not spec.cursor.tie_breaker
                table = _reflect(self._conn, spec.table, key=unnamed)
                if table is None:
                    raise ConnectionFailure(
                        f"spec.source.sql.table: table {spec.table!r} does not exist in the "
                        f"source database {masked(self.url)}"
                    )
                self._from = table
                available = [c.name for c in table.columns]
                primary = [c.name for c in table.primary_key.columns]
            else:
                query = (spec.query or "").strip().rstrip(";")
                probe = select(text("*")).select_from(text(f"({query}) AS adf_q")).limit(0)
                available = list(self._probe(probe, "spec.source.sql.query").keys())
                self._from = text(query).columns(*[column(n) for n in available]).subquery("adf_q")
                primary = []
            self._check("spec.source.sql.columns", spec.columns or [], available)
            self._columns = tuple(spec.columns or available)
            cursor = spec.cursor
            if cursor is not None:
                self._check("spec.source.sql.cursor.column", [cursor.column], available)
                if cursor.tie_breaker:
                    self._check(
                        "spec.source.sql.cursor.tieBreaker", [cursor.tie_breaker], available
                    )
                # A single-column primary key is a safe implicit tie-breaker.
                self._tie = cursor.tie_breaker or (primary[0] if len(primary) == 1 else None)
                self._order = [cursor.column] + ([self._tie] if self._tie else [])
            else:
                self._order = primary
            self.key_columns = tuple(
                [self._tie] if self._tie else primary or ([cursor.column] if cursor else [])
            )
            if spec.where is not None:
                condition = select(literal(1)).select_from(self._from).where(text(spec.where))
                self._probe(condition.limit(0), "spec.source.sql.where")

    def _probe(self, stmt: Any, field: str) -> Any:
        assert self._conn is not None and self._engine is not None
        try:
            with self._conn.begin_nested():
                return self._conn.execute(stmt)
        except _dbapi_errors(self._engine) as exc:
            raise ConnectionFailure(
                f"{field}: the source database refused it: {_reason(exc)}"
            ) from None

    def _check(self, field: str, names: Sequence[str], available: Sequence[str]) -> None:
        missing = [n for n in names if n not in available]
        if missing:
            where = self.spec.table or "the query's result"
            raise ConnectionFailure(
                f"{field}: no column {', '.join(map(repr, missing))} in {where} "
                f"(columns: {', '.join(available)})"
            )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._engine is not None:
            self._engine.dispose()

    @property
    def columns(self) -> tuple[str, ...]:
        return self._columns

    @property
    def incremental(self) -> bool:
        return self.spec.cursor is not None

    def supports_projection(self) -> bool:
        return True

    @property
    def in_process(self) -> bool:
        return _in_process(self._engine)

    def _select(self, request: ReadRequest) -> Any:
        """The SELECT for a read, plus hidden trailing columns that carry the watermark."""
        src = self._from
        assert src is not None
        if request.projection is None:
            outputs: list[ColumnElement[Any]] = [src.c[n] for n in self._columns]
            names = list(self._columns)
            sources = list(self._columns)
        else:
            outputs, names, sources = [], [], []
            for name, ref in request.projection.columns:
                if isinstance(ref, Constant):
                    value = ref.value
                    outputs.append((null() if value is None else literal(value)).label(name))
                    sources.append("")
                else:
                    outputs.append(src.c[ref].label(name))
                    sources.append(ref)
                names.append(name)
        self._names = tuple(names)
        self._positions: list[int] = []
        cursor = self.spec.cursor
        for i, wanted in enumerate([cursor.column, self._tie] if cursor else []):
            if wanted is None:
                continue
            if wanted in sources:
                self._positions.append(sources.index(wanted))
            else:
                outputs.append(src.c[wanted].label(f"adf_wm_{i}"))
                self._positions.append(len(outputs) - 1)
        stmt = select(*outputs).select_from(src)
        if self.spec.where is not None:
            stmt = stmt.where(text(f"({self.spec.where})"))
        for condition in self._conditions(request):
            stmt = stmt.where(condition)
        if self._order:
            stmt = stmt.order_by(*[src.c[n] for n in self._order])
        if request.limit is not None and (self._tie is not None or cursor is None):
            stmt = stmt.limit(request.limit)  # without a tie-breaker: _whole_groups stops
        return stmt

    def _conditions(self, request: ReadRequest) -> list[ColumnElement[bool]]:
        cursor = self.spec.cursor
        if cursor is None:
            if request.window is not None:
                raise SpecError("window: a backfill window needs spec.source.sql.cursor")
            return []
        assert self._from is not None
        col = self._from.c[cursor.column]
        if request.window is not None:
            out = []
            if request.window.start is not None:
                out.append(col >= self._coerce(col.type, request.window.start, "from"))
            if request.window.end is not None:
                out.append(col < self._coerce(col.type, request.window.end, "to"))
            return out
        after = request.after
        if after is None or after.cursor is None:
            return []
        if cursor.lag:
            return [col > _minus(after.cursor, cursor.lag)]
        if self._tie is None or after.tie is None:
            return [col > after.cursor]
        tie = self._from.c[self._tie]
        if self._engine is not None and self._engine.dialect.name in ("postgresql", "sqlite"):
            return [tuple_(col, tie) > tuple_(literal(after.cursor), literal(after.tie))]
        return [or_(col > after.cursor, and_(col == after.cursor, tie > after.tie))]

    @staticmethod
    def _coerce(kind: TypeEngine[Any], value: str, bound: str) -> Any:
        """A window bound as the cursor column's Python type (the CLI gives strings)."""
        try:
            python_type = kind.python_type
        except NotImplementedError:
            return value
        try:
            if python_type is datetime:
                return datetime.fromisoformat(value)
            if python_type is date:
                return date.fromisoformat(value)
            if python_type in (int, float, Decimal):
                return python_type(value)
        except (ValueError, ArithmeticError):
            raise SpecError(
                f"window.{bound}: {value!r} is not a {python_type.__name__} like the cursor column"
            ) from None
        return value

    def raw_format(self) -> str | None:
        if self._engine is None or self._conn is None:
            return None
        if self._engine.dialect.driver == "pysqlite":
            return SQLITE_NATIVE
        if self._engine.dialect.driver != "psycopg":
            return None
        return f"{COPY_TEXT}:{_psycopg(self._conn).info.encoding}"

    def read(self, request: ReadRequest) -> Iterator[Batch]:
        assert self._conn is not None and self._engine is not None
        stmt = self._select(request)
        visible = len(self._names)
        source = f"sql:{self.spec.table or 'query'}"
        raw = self._reads_raw(request)
        try:
            if raw and request.raw_format != SQLITE_NATIVE:
                yield from self._copy_out(stmt, request, source)
                return
            native = raw and request.raw_format == SQLITE_NATIVE
            stored = self._storage_to_python(stmt) if native else None
            with closing(self._stream(stmt, native=native)) as stream:
                for rows, watermark in self._with_watermarks(stream, request, stored):
                    if len(rows) and len(rows[0]) != visible:
                        rows = [r[:visible] for r in rows]
                    yield Batch(self._names, rows, source, watermark, self.key_columns)
        except _dbapi_errors(self._engine) as exc:
            raise translate(exc, self._engine, "reading the source failed") from None
        except (TypeError, ValueError, ArithmeticError) as exc:  # a value unlike its column type
            raise DataError(
                f"reading the source failed: a value does not fit its column: {exc}"
            ) from None

    def _reads_raw(self, request: ReadRequest) -> bool:
        """Whether a read yields raw batches (after :meth:`_select` for this request).

        Raw batches take their watermark from their last row alone: that needs a tie-breaker.
        """
        return (
            request.raw_format is not None
            and self._tie is not None
            and all(p < len(self._names) for p in self._positions)
        )

    def raw_codec(self, request: ReadRequest, sink: Sink[Any]) -> RawCodec | None:
        """COPY text ⇄ rows between two PostgreSQL databases (see pgcopy.TextRows)."""
        if (
            request.raw_format is None
            or request.raw_format == SQLITE_NATIVE
            or not isinstance(sink, SqlSink)
            or self._conn is None
            or self._engine is None
        ):
            return None
        target = sink.copy_rows_target()
        stmt = self._select(request)
        if target is None or not self._reads_raw(request):
            return None
        from adf_core.connectors.pgcopy import CopyRows

        keys = list(sink.spec.keys or []) if sink.mode == "upsert" else []
        compiled = stmt.compile(dialect=self._engine.dialect)
        with self._conn.begin():
            return CopyRows.build(
                _psycopg(self._conn), str(compiled), compiled.params, *target, keys
            )

    def _with_watermarks(
        self,
        stream: Iterator[list[Row]],
        request: ReadRequest,
        stored: list[Callable[[Any], Any] | None] | None,
    ) -> Iterator[tuple[list[Row], Watermark | None]]:
        """Pair each batch with the watermark that is safe to commit after it."""
        if not self._positions:
            for rows in stream:
                yield rows, None
            return

        def mark(values: tuple[Any, ...]) -> Watermark:
            if stored is not None:  # native rows: only the watermark row is converted
                values = tuple(f(v) if f else v for f, v in zip(stored, values, strict=True))
            return Watermark(*values)

        if self._tie is not None:
            get = itemgetter(*self._positions)
            for rows in stream:
                yield rows, _not_behind(mark(get(rows[-1])), request.after)
            return
        # Without a tie-breaker a batch may end inside a group of rows sharing a cursor value;
        # its watermark then stops before that group, which a later run reads again: rows at a
        # batch edge may be read twice after a crash (at least once), never skipped. A run
        # always ends at the end of a group (maxRowsPerRun is exceeded rather than cut a group).
        c = self._positions[0]
        previous, pending = request.after, None
        for rows in _whole_groups(stream, c, request.limit):
            if pending is not None:
                previous = _group_mark(pending, c, rows[0][c], previous, mark)
                yield pending, previous
            pending = rows
        if pending is not None:
            yield pending, _group_mark(pending, c, _END, previous, mark)

    def _storage_to_python(self, stmt: Any) -> list[Callable[[Any], Any] | None]:
        """SQLAlchemy's result processors of the watermark columns (stored text → datetime…)."""
        assert self._engine is not None
        dialect = self._engine.dialect
        columns = list(stmt.selected_columns)
        return [
            columns[p].type.dialect_impl(dialect).result_processor(dialect, None)
            for p in self._positions
        ]

    def _stream(self, stmt: Any, *, native: bool = False) -> Generator[list[Row], None, None]:
        """Batches of rows; ``native`` keeps SQLite's stored values (no SQLAlchemy processing)."""
        assert self._conn is not None and self._engine is not None
        size = self.spec.batch_size
        if self._engine.dialect.driver == "psycopg":
            # A named (server-side) cursor: no SQLAlchemy Row per row. Text results: psycopg parses
            # them faster than binary ones for the usual types (measured).
            compiled = stmt.compile(dialect=self._engine.dialect)
            raw = _psycopg(self._conn)
            with self._conn.begin(), raw.cursor(name="adf_source") as cur:
                cur.itersize = size
                cur.execute(str(compiled), compiled.params)
                while rows := cur.fetchmany(size):
                    yield rows
            return
        with self._conn.begin():
            if native:
                # The driver's own rows (SQLite's cursor streams by itself): SQLAlchemy binds the
                # parameters and must not buffer, or its read-ahead would be lost here.
                cursor = self._conn.execute(stmt).cursor
                while native_rows := cursor.fetchmany(size):
                    yield NativeRows(native_rows)
                return
            result = self._conn.execution_options(stream_results=True, max_row_buffer=size).execute(
                stmt
            )
            for part in result.partitions(size):
                yield list(part)

    def _copy_out(self, stmt: Any, request: ReadRequest, source: str) -> Iterator[Batch]:
        """Stream ``COPY (SELECT …) TO STDOUT`` in batches of rows, unparsed.

        As binary COPY when every column has the very type of the sink's column of its name
        (``request.sink_types``) and that type's binary form is portable: both servers then
        skip formatting and parsing text (measured: a fifth of the sink server's CPU at 1M
        rows). Only the last row of each batch is parsed, for its watermark, with psycopg's own
        loaders for the cursor columns' types.
        """
        assert self._conn is not None and self._engine is not None
        import psycopg
        from psycopg.pq import Format

        from adf_core.connectors.pgcopy import (
            binary_fields,
            copy_out_batches,
            load_field,
            same_binary_form,
        )

        compiled = stmt.compile(dialect=self._engine.dialect)
        sql, params = str(compiled), compiled.params
        raw = _psycopg(self._conn)
        encoding = raw.info.encoding
        sink_types = request.sink_types or {}
        with self._conn.begin():
            with raw.cursor() as cur:  # also starts the transaction the COPY runs in
                cur.execute(f"SELECT * FROM ({sql}) AS adf_probe LIMIT 0", params)
                oids = [column.type_code for column in cur.description or ()]
            binary = all(
                same_binary_form(oid, sink_types.get(name))
                for name, oid in zip(self._names, oids, strict=True)
            )
            log.info("rows pass between the databases as %s COPY", "binary" if binary else "text")
            form = Format.BINARY if binary else Format.TEXT
            loaders = [
                raw.adapters.get_loader(oids[p], form)(oids[p], raw)  # type: ignore[misc]
                for p in self._positions
            ]

            def batch(data: bytes, count: int, last: bytes) -> Batch:
                if binary:
                    found = binary_fields(last)[0]
                    values = [
                        None if (field := found[p]) is None else loader.load(field)
                        for p, loader in zip(self._positions, loaders, strict=True)
                    ]
                else:
                    texts = last[:-1].split(b"\t")
                    values = [
                        load_field(loader, texts[p], encoding)
                        for p, loader in zip(self._positions, loaders, strict=True)
                    ]
                mark = _not_behind(Watermark(*values), request.after) if values else None
                return Batch(self._names, [], source, mark, self.key_columns, None, data, count)

            # COPY takes no protocol parameters: they are merged client-side, as psycopg's does.
            query = (
                psycopg.ClientCursor(raw).mogrify(sql, params) if params else sql.replace("%%", "%")
            )
            for out in copy_out_batches(raw, query, self.spec.batch_size, binary=binary):
                yield batch(*out)


_END = object()


def _whole_groups(stream: Iterator[list[Row]], c: int, limit: int | None) -> Iterator[list[Row]]:
    """The stream up to ``limit`` rows, then on to the end of the cursor group it stopped in."""
    total, stop, start = 0, _END, 0
    for rows in stream:
        if stop is _END and limit is not None and total + len(rows) >= limit:
            stop, start = rows[limit - total - 1][c], limit - total
        if stop is not _END:
            end = next((i for i in range(start, len(rows)) if rows[i][c] != stop), None)
            if end is not None:
                if end:
                    yield rows[:end]
                return
            start = 0
        total += len(rows)
        yield rows


def _group_mark(
    rows: list[Row],
    c: int,
    following: Any,
    previous: Watermark | None,
    mark: Callable[[tuple[Any, ...]], Watermark],
) -> Watermark | None:
    """The last cursor value whose group of rows ends inside ``rows``."""
    last = rows[-1][c]
    if following is _END or following != last:
        return _not_behind(mark((last,)), previous)
    for row in reversed(rows):
        if row[c] != last:
            return _not_behind(mark((row[c],)), previous)
    return previous


def _minus(value: Any, lag: float) -> Any:
    if isinstance(value, datetime | date):
        return value - timedelta(seconds=lag)
    if isinstance(value, Decimal):
        return value - Decimal(str(lag))
    if isinstance(value, int | float):
        return value - lag
    return value


def _not_behind(new: Watermark, old: Watermark | None) -> Watermark:
    """With ``lag`` the read restarts before the watermark; it must never move backwards."""
    if old is None:
        return new
    try:
        return old if new.key() < old.key() else new
    except TypeError:
        return new


# --- sink ----------------------------------------------------------------------------------------


def infer_type(values: Sequence[Any]) -> TypeEngine[Any]:
    """A column type for the first non-null value (create_table from the first batch)."""
    sample = next((v for v in values if v is not None), None)
    kinds: list[tuple[type | tuple[type, ...], TypeEngine[Any]]] = [
        (bool, Boolean()),
        (int, BigInteger()),
        (float, Double()),
        (Decimal, Numeric()),
        (datetime, DateTime(timezone=getattr(sample, "tzinfo", None) is not None)),
        (date, Date()),
        (time, Time()),
        ((bytes, bytearray, memoryview), LargeBinary()),
        ((dict, list), JSON()),
    ]
    for kind, sql_type in kinds:
        if isinstance(sample, kind):
            return sql_type
    return Text()


class Writer(Protocol):
    """How rows reach a table in one dialect; called inside the batch's transaction."""

    def insert(
        self, conn: Connection, table: Table, columns: Sequence[str], rows: list[Row]
    ) -> int: ...

    def upsert(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[str],
        rows: list[Row],
        keys: Sequence[str],
        skip_unchanged: bool,
    ) -> int:
        """Insert or update by keys; return how many rows were left alone as unchanged."""
        ...


def _dedupe(columns: Sequence[str], rows: list[Row], keys: Sequence[str]) -> list[Row]:
    """Last row wins among rows of one batch that share a key (ON CONFLICT needs unique keys)."""
    kept = last_per_key(columns, rows, keys)
    return rows if kept is None else [rows[i] for i in kept]


def _quoted(conn: Connection, table: Table) -> tuple[Callable[[str], str], str]:
    prep = conn.dialect.identifier_preparer
    return prep.quote, prep.format_table(table)


@dataclass(frozen=True, slots=True)
class RawCopy:
    """Rows as PostgreSQL COPY text, passed from a source to a sink without parsing them."""

    data: bytes
    count: int
    unique: bool = False  # no two rows share the upsert's key

    def __len__(self) -> int:
        return self.count


# PostgreSQL type oid -> the Python types its binary COPY dumper takes exactly. A batch whose
# values all match goes as binary COPY (about twice as fast to format); anything else as text,
# which the server parses (an int into numeric, an ISO string into a timestamp, …).
_BINARY_SAFE: dict[int, tuple[type, ...]] = {
    16: (bool,),
    20: (int,),
    21: (int,),
    23: (int,),
    25: (str,),
    1042: (str,),
    1043: (str,),
    700: (float,),
    701: (float,),
    1700: (Decimal,),
    1082: (date,),
    1114: (datetime,),
    1184: (datetime,),
}


def binary_copy_types(
    oids: dict[str, int], columns: Sequence[str], rows: Sequence[Row]
) -> list[int] | None:
    """The columns' type oids when every value suits binary COPY as it is, else None.

    Checks every row (rows formatted in a worker cannot be redone as text if the server refuses
    them); without rows, the oids alone.
    """
    types = [oids.get(c, 0) for c in columns]
    if not all(oid in _BINARY_SAFE for oid in types):
        return None
    for oid, values in zip(types, zip(*rows, strict=True), strict=True) if rows else ():
        kinds = set(map(type, values))
        kinds.discard(type(None))
        if not kinds.issubset(_BINARY_SAFE[oid]):
            return None
        if oid in (1114, 1184):  # timestamp wants naive datetimes, timestamptz aware ones
            naive = oid == 1114
            if any((v.tzinfo is None) != naive for v in values if v is not None):
                return None
    return types


class PostgresWriter:
    """COPY straight into the table (append) or into a temporary staging table (upsert)."""

    def __init__(self) -> None:
        self._oids: dict[str, dict[str, int]] = {}
        self._text_only: set[str] = set()
        self._staged: set[str] = set()  # staging tables created (and committed) in this session

    def _column_oids(self, conn: Connection, table: Table) -> dict[str, int]:
        _, name = _quoted(conn, table)
        if name not in self._oids:
            found = conn.exec_driver_sql(
                "SELECT attname, atttypid FROM pg_attribute "
                "WHERE attrelid = %(t)s::regclass AND attnum > 0 AND NOT attisdropped",
                {"t": name},
            )
            self._oids[name] = {str(n): int(oid) for n, oid in found}
        return self._oids[name]

    def _binary_types(
        self, conn: Connection, table: Table, columns: Sequence[str], first: Row
    ) -> list[int] | None:
        """The columns' oids when the first row's values suit binary COPY, else None (text)."""
        oids = self._column_oids(conn, table)
        types = [oids.get(c, 0) for c in columns]
        for oid, value in zip(types, first, strict=True):
            allowed = _BINARY_SAFE.get(oid)
            if allowed is None or (value is not None and type(value) not in allowed):
                return None
            if (
                oid in (1114, 1184)
                and value is not None
                and (value.tzinfo is None) != (oid == 1114)
            ):
                return None  # timestamp wants naive datetimes, timestamptz aware ones
        return types

    def _copy(
        self, conn: Connection, table: Table, target: str, columns: Sequence[str],
        rows: list[Row] | RawCopy,
    ) -> None:  # fmt: skip
        import psycopg

        q = conn.dialect.identifier_preparer.quote
        statement = f"COPY {target} ({', '.join(map(q, columns))}) FROM STDIN"
        if isinstance(rows, RawCopy):
            from adf_core.connectors.pgcopy import BINARY_SIGNATURE

            if rows.data.startswith(BINARY_SIGNATURE):
                statement += " (FORMAT BINARY)"
            with _psycopg(conn).cursor() as cur, cur.copy(statement) as copy:
                copy.write(rows.data)
            return
        binary = None
        if rows and target not in self._text_only:
            binary = self._binary_types(conn, table, columns, rows[0])
        if binary is not None:
            try:  # a later row with other types fails the binary dump: redo the batch as text
                with conn.begin_nested():
                    self._write(conn, statement + " (FORMAT BINARY)", rows, binary)
                return
            except (TypeError, ValueError, OverflowError, psycopg.Error):
                log.debug("binary COPY into %s refused a value; text COPY from now on", target)
                self._text_only.add(target)
        self._write(conn, statement, rows, None)

    @staticmethod
    def _write(conn: Connection, statement: str, rows: list[Row], types: list[int] | None) -> None:
        with _psycopg(conn).cursor() as cur, cur.copy(statement) as copy:
            if types is not None:
                copy.set_types(types)
            for row in rows:
                copy.write_row(row)

    def insert(
        self, conn: Connection, table: Table, columns: Sequence[str], rows: list[Row] | RawCopy
    ) -> int:
        _, name = _quoted(conn, table)
        self._copy(conn, table, name, columns, _jsonb(table, columns, rows))
        return len(rows)

    def prepare_upsert(self, conn: Connection, table: Table) -> None:
        """Create the session's staging table in a transaction of its own, once per run.

        Outside any batch's transaction, so that a batch rolled back does not take the table
        with it; ``ON COMMIT DELETE ROWS`` empties it at every batch's commit.
        """
        stage = self._stage_name(conn, table)
        if stage not in self._staged:
            with conn.begin():
                self._create_stage(conn, table, stage)
            self._staged.add(stage)

    @staticmethod
    def _stage_name(conn: Connection, table: Table) -> str:
        return str(conn.dialect.identifier_preparer.quote(f"adf_stage_{table.name}"))

    @staticmethod
    def _create_stage(conn: Connection, table: Table, stage: str) -> None:
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {_quoted(conn, table)[1]} "
            "INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )

    def upsert(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[str],
        rows: list[Row] | RawCopy,
        keys: Sequence[str],
        skip_unchanged: bool,
    ) -> int:
        q, name = _quoted(conn, table)
        stage = self._stage_name(conn, table)
        if stage not in self._staged:  # not prepared: created in the batch's own transaction
            self._create_stage(conn, table, stage)
        cols = ", ".join(map(q, columns))
        key_list = ", ".join(map(q, keys))
        distinct = order = ""
        if not isinstance(rows, RawCopy):
            rows = _dedupe(columns, rows, keys)
        elif not rows.unique:  # unparsed rows: the last of rows sharing a key wins, in SQL
            distinct, order = f"DISTINCT ON ({key_list}) ", f" ORDER BY {key_list}, ctid DESC"
        select = f"SELECT {distinct}{cols} FROM {stage}{order}"
        self._copy(conn, table, stage, columns, _jsonb(table, columns, rows))
        others = [c for c in columns if c not in keys]
        if others:
            sets = ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in others)
            action = f"DO UPDATE SET {sets}"
            if skip_unchanged:
                mine = ", ".join(f"t.{q(c)}" for c in others)
                theirs = ", ".join(f"EXCLUDED.{q(c)}" for c in others)
                action += f" WHERE ROW({mine}) IS DISTINCT FROM ROW({theirs})"
        else:
            action = "DO NOTHING"
        result = conn.exec_driver_sql(
            f"INSERT INTO {name} AS t ({cols}) {select} ON CONFLICT ({key_list}) {action}"
        )
        if conn.in_nested_transaction():
            # Rows written one by one behind savepoints (write_isolated): the staging table is
            # emptied only at commit, so each row would otherwise upsert all the earlier ones
            # again (quadratic: ~40 ms per row at 250 rows, measured).
            conn.exec_driver_sql(f"DELETE FROM {stage}")
        return len(rows) - int(result.rowcount) if skip_unchanged else 0


def _jsonb(table: Table, columns: Sequence[str], rows: list[Row] | RawCopy) -> list[Row] | RawCopy:
    """COPY needs dict/list values of JSON columns wrapped for psycopg."""
    positions = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, JSON)]
    if not positions or isinstance(rows, RawCopy):
        return rows
    from psycopg.types.json import Jsonb

    def wrap(row: Row) -> Row:
        out = list(row)
        for i in positions:
            if out[i] is not None:
                out[i] = Jsonb(out[i])
        return tuple(out)

    return [wrap(r) for r in rows]


class SqliteWriter:
    """executemany of one INSERT (… ON CONFLICT DO UPDATE for upsert) on the raw connection."""

    def _run(
        self, conn: Connection, table: Table, sql: str, columns: Sequence[str], rows: list[Row]
    ) -> int:
        dialect = conn.dialect
        procs = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
        if any(procs) and rows and not isinstance(rows, NativeRows):
            values = list(zip(*rows, strict=True))  # column-wise: map() per column at C speed
            for i, proc in enumerate(procs):
                if proc is not None:
                    values[i] = tuple(map(proc, values[i]))
            rows = list(zip(*values, strict=True))
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cur = raw.cursor()
        try:
            cur.executemany(sql, rows)
            return int(cur.rowcount)
        finally:
            cur.close()

    def _insert_sql(self, conn: Connection, table: Table, columns: Sequence[str]) -> str:
        q, name = _quoted(conn, table)
        marks = ", ".join("?" for _ in columns)
        return f"INSERT INTO {name} ({', '.join(map(q, columns))}) VALUES ({marks})"

    def insert(
        self, conn: Connection, table: Table, columns: Sequence[str], rows: list[Row]
    ) -> int:
        self._run(conn, table, self._insert_sql(conn, table, columns), columns, rows)
        return len(rows)

    def upsert(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[str],
        rows: list[Row],
        keys: Sequence[str],
        skip_unchanged: bool,
    ) -> int:
        q, _ = _quoted(conn, table)
        others = [c for c in columns if c not in keys]
        conflict = f" ON CONFLICT ({', '.join(map(q, keys))}) "
        if others:
            sets = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in others)
            action = f"DO UPDATE SET {sets}"
            if skip_unchanged:
                me = q(table.name)
                action += " WHERE " + " OR ".join(
                    f"{me}.{q(c)} IS NOT excluded.{q(c)}" for c in others
                )
        else:
            action = "DO NOTHING"
        sql = self._insert_sql(conn, table, columns) + conflict + action
        changed = self._run(conn, table, sql, columns, rows)
        return len(rows) - changed if skip_unchanged else 0


class GenericWriter:
    """Any dialect SQLAlchemy speaks: insertmanyvalues; upsert as delete-then-insert by keys."""

    CHUNK = 500

    def insert(
        self, conn: Connection, table: Table, columns: Sequence[str], rows: list[Row]
    ) -> int:
        if rows:
            conn.execute(insert(table), [dict(zip(columns, r, strict=True)) for r in rows])
        return len(rows)

    def upsert(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[str],
        rows: list[Row],
        keys: Sequence[str],
        skip_unchanged: bool,
    ) -> int:
        rows = _dedupe(columns, rows, keys)
        get = itemgetter(*[columns.index(k) for k in keys])
        key_of = (lambda r: (get(r),)) if len(keys) == 1 else get
        key_cols = tuple_(*[table.c[k] for k in keys])
        unchanged = 0
        for start in range(0, len(rows), self.CHUNK):
            chunk = rows[start : start + self.CHUNK]
            if skip_unchanged:
                stored = conn.execute(
                    select(*[table.c[c] for c in columns]).where(
                        key_cols.in_([key_of(r) for r in chunk])
                    )
                )
                same = {tuple(r) for r in stored}
                changed = [r for r in chunk if tuple(r) not in same]
                unchanged += len(chunk) - len(changed)
                chunk = changed
            if chunk:
                conn.execute(delete(table).where(key_cols.in_([key_of(r) for r in chunk])))
                self.insert(conn, table, columns, chunk)
        return unchanged


WRITERS: dict[str, Callable[[], Writer]] = {
    "postgresql+psycopg": PostgresWriter,
    "sqlite+pysqlite": SqliteWriter,
}


def writer_for(engine: Engine) -> Writer:
    make = WRITERS.get(f"{engine.dialect.name}+{engine.dialect.driver}", GenericWriter)
    return make()


def state_table(metadata: MetaData) -> Table:
    return Table(
        STATE_TABLE,
        metadata,
        Column("flow_id", String(512), primary_key=True),
        Column("watermark", Text, nullable=True),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )


def create_once(conn: Connection, table: Table) -> bool:
    """Create ``table`` unless it exists; return whether this call created it.

    Runs whose first write hits a fresh PostgreSQL database at the same moment would all miss the
    table and collide in ``CREATE TABLE`` (a unique violation on ``pg_type``): a lock held to the
    end of the caller's transaction makes them take turns, so the later ones see it committed.
    """
    if conn.dialect.name == "postgresql":
        name = conn.dialect.identifier_preparer.format_table(table)
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%(k)s))", {"k": f"adf:{name}"})
    if conn.dialect.has_table(conn, table.name, schema=table.schema):
        return False
    table.create(conn)
    return True


def dead_letter_table(name: str, metadata: MetaData) -> Table:
    schema, table = _split_name(name)
    return Table(
        table,
        metadata,
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
        Column("flow", String(512), nullable=False),
        Column("row", Text, nullable=False),
        Column("error", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        schema=schema,
    )


class SqlSink(Sink[SqlSinkSpec]):
    """Writes batches by mode; owns the ``adf_state`` watermark rows of the sink database."""

    def __init__(
        self, spec: SqlSinkSpec, *, writer: Writer | None = None, sibling: SqlSink | None = None
    ) -> None:
        super().__init__(spec)
        self._writer = writer
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._table: Table | None = None
        self._target: Table | None = None
        self._checked: tuple[str, ...] = ()
        self._meta = MetaData()
        self._state = state_table(self._meta)
        self._dead: Table | None = None
        self._sibling = sibling  # an open sink whose engine and checked table this one shares

    @property
    def mode(self) -> Literal["append", "upsert", "replace"]:
        return self.spec.mode

    @property
    def in_process(self) -> bool:
        return _in_process(self._engine)

    def raw_formats(self) -> frozenset[str]:
        if self._table is None:
            return frozenset()  # raw rows cannot create a table: its types come from values
        if isinstance(self._writer, SqliteWriter):
            return frozenset({SQLITE_NATIVE})
        if isinstance(self._writer, PostgresWriter):
            assert self._conn is not None
            return frozenset({f"{COPY_TEXT}:{_psycopg(self._conn).info.encoding}"})
        return frozenset()

    def copy_rows_target(self) -> tuple[psycopg.Connection[Any], BinaryTypes] | None:
        """How rows formatted elsewhere reach the table as COPY data, if it takes them that way.

        The connection whose dumpers format the values, and the binary COPY types of a batch's
        columns. Only when the table exists (a raw batch cannot create it) and has no JSON
        column (a dict or list needs psycopg's JSON wrapper, which the row path adds).
        """
        table, oids = self._table, self.raw_types()
        if table is None or oids is None or any(isinstance(c.type, JSON) for c in table.columns):
            return None
        assert self._conn is not None
        return _psycopg(self._conn), partial(binary_copy_types, oids)

    def raw_types(self) -> dict[str, int] | None:
        """The table's column type oids by name (PostgreSQL; once the table exists)."""
        writer = self._writer
        if not isinstance(writer, PostgresWriter) or self._conn is None or self._table is None:
            return None
        with self._conn.begin():
            return dict(writer._column_oids(self._conn, self._table))

    def open(self) -> None:
        if self._sibling is not None:
            self._open_beside(self._sibling)
            return
        self.url = parse_url(self.spec.url.resolve(), "spec.sink.sql.url")
        self._engine, self._conn = connect(self.url, "sink")
        if self._writer is None:
            self._writer = writer_for(self._engine)
        try:
            with self._conn.begin():
                if self._engine.dialect.name == "postgresql":
                    self._conn.exec_driver_sql("SET synchronous_commit TO off")  # see finish()
                create_once(self._conn, self._state)
                self._target = _reflect(self._conn, self.spec.table, whole=self.mode == "replace")
                if self._target is None and not self.spec.create_table:
                    raise ConnectionFailure(
                        f"spec.sink.sql.table: table {self.spec.table!r} does not exist in the "
                        f"sink database {masked(self.url)} and createTable is false"
                    )
                if self._target is not None and self.mode == "upsert":
                    self._check_keys(self._target)
                if self.mode == "replace":
                    self._drop_staging()
                    if self._target is not None:
                        self._table = self._copy_definition(self._target)
                        self._table.create(self._conn)
                else:
                    self._table = self._target
        except _dbapi_errors(self._engine) as exc:
            raise translate(exc, self._engine, "preparing the sink failed") from None

    def _open_beside(self, sibling: SqlSink) -> None:
        """A second connection of the sibling's engine; its checks and reflection hold here too."""
        assert sibling._engine is not None
        self.url, self._table, self._target = sibling.url, sibling._table, sibling._target
        self._engine = sibling._engine
        try:
            self._conn = sibling._engine.connect()
            self._writer = writer_for(sibling._engine)
            with self._conn.begin():
                self._conn.exec_driver_sql("SET synchronous_commit TO off")  # see finish()
        except _dbapi_errors(sibling._engine) as exc:
            raise ConnectionFailure(
                f"cannot connect to the sink database {masked(self.url)}: {_reason(exc)}"
            ) from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._engine is not None and self._sibling is None:  # the sibling's is not ours
            self._engine.dispose()

    def _check_keys(self, table: Table) -> None:
        keys = list(self.spec.keys or [])
        missing = [k for k in keys if k not in table.c]
        if missing:
            raise ConnectionFailure(
                f"spec.sink.sql.keys: no column {', '.join(map(repr, missing))} in table "
                f"{self.spec.table!r}"
            )
        assert self._conn is not None
        insp = inspect(self._conn)
        schema, name = _split_name(self.spec.table)
        primary = insp.get_pk_constraint(name, schema).get("constrained_columns") or []
        unique_sets = [set(primary)]
        unique_sets += [set(u["column_names"]) for u in insp.get_unique_constraints(name, schema)]
        unique_sets += [
            {c for c in i["column_names"] if c}
            for i in insp.get_indexes(name, schema)
            if i["unique"]
        ]
        if set(keys) not in unique_sets:
            raise ConnectionFailure(
                f"spec.sink.sql.keys: table {self.spec.table!r} has no primary key or unique "
                f"index on ({', '.join(keys)}); upsert needs one"
            )

    # --- replace: a staging table swapped in at the end -------------------------------------

    def _staging_name(self) -> str:
        return _split_name(self.spec.table)[1] + STAGING_SUFFIX

    def _drop_staging(self) -> None:
        assert self._conn is not None
        schema, _ = _split_name(self.spec.table)
        stale = _reflect(self._conn, ".".join(filter(None, [schema, self._staging_name()])))
        if stale is not None:
            stale.drop(self._conn)

    def _copy_definition(self, target: Table) -> Table:
        """The target's columns and keys under the staging name (indexes come after the swap)."""
        uniques = [
            UniqueConstraint(*[c.name for c in con.columns])
            for con in target.constraints
            if isinstance(con, UniqueConstraint)
        ]
        return Table(
            self._staging_name(),
            MetaData(),
            *[Column(c.name, c.type, nullable=c.nullable) for c in target.columns],
            PrimaryKeyConstraint(*[c.name for c in target.primary_key.columns]),
            *uniques,
            schema=target.schema,
        )

    def finish(self, checkpoint: Checkpoint | None) -> None:
        """End of a successful run: replace's swap, and on PostgreSQL the one flushed commit.

        On PostgreSQL the batches commit without waiting for their WAL flush (``open`` sets
        synchronous_commit off for the session). WAL is written in order, so a server crash can
        only lose whole newest batches together with their watermarks, which the next run reads
        again; this commit waits for the flush, which makes every earlier one durable before the
        run reports success: one fsync wait per run instead of one per batch.
        """
        assert self._conn is not None and self._engine is not None
        postgres = self._engine.dialect.name == "postgresql"
        if self.mode != "replace" and not postgres:
            return
        try:
            with self._conn.begin():
                if postgres:  # a flushed commit makes every earlier (unflushed) one durable
                    self._conn.exec_driver_sql("SET LOCAL synchronous_commit TO on")
                    self._conn.exec_driver_sql("SELECT txid_current()")  # a commit record
                if self.mode == "replace" and self._table is not None:
                    self._swap(self._table, self._target)
                if checkpoint is not None:
                    self._save_state(checkpoint)
        except _dbapi_errors(self._engine) as exc:
            what = "swapping in" if self.mode == "replace" else "committing the run's end to"
            raise translate(exc, self._engine, f"{what} table {self.spec.table!r} failed") from None

    def _swap(self, staging: Table, target: Table | None) -> None:
        """Drop the old table, rename the staging one, restore index names (one transaction)."""
        assert self._conn is not None and self._engine is not None
        prep = self._conn.dialect.identifier_preparer
        final_name = _split_name(self.spec.table)[1]
        if target is not None:
            target.drop(self._conn)
        self._conn.exec_driver_sql(
            f"ALTER TABLE {prep.format_table(staging)} RENAME TO {prep.quote(final_name)}"
        )
        if self._engine.dialect.name == "postgresql":
            self._rename_pg_indexes(final_name)
        if target is not None and target.indexes:
            renamed = Table(final_name, MetaData(), autoload_with=self._conn, schema=staging.schema)
            for index in target.indexes:
                columns = [renamed.c[c.name] for c in index.columns]
                Index(index.name, *columns, unique=index.unique).create(self._conn)

    def _rename_pg_indexes(self, final_name: str) -> None:
        """PostgreSQL keeps `<staging>_pkey`-style names after a rename; give them back."""
        assert self._conn is not None
        q = self._conn.dialect.identifier_preparer.quote
        schema, _ = _split_name(self.spec.table)
        staging = self._staging_name()
        names = self._conn.execute(
            text(
                "SELECT indexname FROM pg_indexes WHERE tablename = :t "
                "AND schemaname = COALESCE(:s, current_schema())"
            ),
            {"t": final_name, "s": schema},
        ).scalars()
        for index in list(names):
            if index.startswith(staging):
                new = final_name + index[len(staging) :]
                prefix = f"{q(schema)}." if schema else ""
                self._conn.exec_driver_sql(f"ALTER INDEX {prefix}{q(index)} RENAME TO {q(new)}")

    # --- batches ----------------------------------------------------------------------------

    def _ensure_table(self, batch: Batch) -> Table:
        assert self._conn is not None
        if self._table is None:
            name = (
                self._staging_name() if self.mode == "replace" else _split_name(self.spec.table)[1]
            )
            keys = list(self.spec.keys or [])
            missing = [k for k in keys if k not in batch.columns]
            if missing:
                raise ConnectionFailure(
                    f"spec.sink.sql.keys: no column {', '.join(map(repr, missing))} in the rows "
                    f"to write (columns: {', '.join(batch.columns)})"
                )
            columns = [
                Column(c, infer_type([r[i] for r in batch.rows[:1000]]), nullable=c not in keys)
                for i, c in enumerate(batch.columns)
            ]
            constraint = [PrimaryKeyConstraint(*keys)] if keys else []
            table = Table(
                name, MetaData(), *columns, *constraint, schema=_split_name(self.spec.table)[0]
            )
            with self._conn.begin():
                if not create_once(self._conn, table):  # another run created it meanwhile
                    found = _reflect(self._conn, ".".join(filter(None, [table.schema, name])))
                    assert found is not None
                    table = found
                    if self.mode == "upsert":
                        self._check_keys(table)
            self._table = table
        if batch.columns != self._checked:
            unknown = [c for c in batch.columns if c not in self._table.c]
            if unknown:
                raise ConnectionFailure(
                    f"spec.sink.sql.table: table {self.spec.table!r} has no column "
                    f"{', '.join(map(repr, unknown))} (the transformed rows have: "
                    f"{', '.join(batch.columns)})"
                )
            self._checked = batch.columns
        if self.mode == "upsert" and isinstance(self._writer, PostgresWriter):
            self._writer.prepare_upsert(self._conn, self._table)
        return self._table

    def read_state(self, flow_id: str) -> Watermark | None:
        assert self._conn is not None
        with self._conn.begin():
            stored = self._conn.execute(
                select(self._state.c.watermark).where(self._state.c.flow_id == flow_id)
            ).scalar()
        return Watermark.from_json(stored) if stored else None

    def write(
        self,
        batch: Batch,
        checkpoint: Checkpoint | None,
        dead_letters: DeadLetters | None = None,
        in_turn: InTurn | None = None,
    ) -> WriteResult:
        assert self._conn is not None and self._engine is not None
        table = self._ensure_table(batch) if len(batch) or self._table is not None else None
        if self.mode == "replace":
            checkpoint = None  # the watermark moves with the swap, in finish()
        try:
            with self._conn.begin():
                result = self._write_rows(table, batch) if table is not None else WriteResult()
                if dead_letters is not None and dead_letters.failures:
                    self._dead_letters(dead_letters)
                self._commit_point(checkpoint, in_turn)
            return result
        except _dbapi_errors(self._engine) as exc:
            raise self._write_error(exc) from None

    def write_isolated(
        self,
        batch: Batch,
        checkpoint: Checkpoint | None,
        dead_letters: DeadLetters | None,
        in_turn: InTurn | None = None,
    ) -> tuple[WriteResult, list[RowFailure]]:
        """Write row by row behind savepoints, so rows the database refuses are set aside."""
        assert self._conn is not None and self._engine is not None
        table = self._ensure_table(batch) if len(batch) or self._table is not None else None
        if self.mode == "replace":
            checkpoint = None
        failures: list[RowFailure] = []
        result = WriteResult()
        errors = _dbapi_errors(self._engine)
        try:
            with self._conn.begin():
                for index, (single, row) in enumerate(self._singles(batch)):
                    try:
                        with self._conn.begin_nested():
                            one = (
                                self._write_rows(table, single)
                                if table is not None
                                else WriteResult()
                            )
                        result.written += one.written
                        result.skipped += one.skipped
                    except errors as exc:
                        if _deadlock(exc):  # not the row's fault: the whole batch again
                            raise
                        data = dict(zip(batch.columns, row, strict=True))
                        key = row_key(data, batch.key_columns, index)
                        failures.append(RowFailure(data, key, f"row {key}: {_reason(exc)}"))
                if dead_letters is not None:  # a copy: the batch may be written again
                    letters = replace(dead_letters, failures=dead_letters.failures + failures)
                    if letters.failures:
                        self._dead_letters(letters)
                self._commit_point(checkpoint, in_turn)
        except errors as exc:
            raise self._write_error(exc) from None
        return result, failures

    def _commit_point(self, checkpoint: Checkpoint | None, in_turn: InTurn | None) -> None:
        """The end of a batch's transaction: wait for the batch before, then the watermark."""
        if in_turn is not None:
            in_turn()
        if checkpoint is not None:
            self._save_state(checkpoint)

    def _write_error(self, exc: BaseException) -> Exception:
        assert self._engine is not None
        if _deadlock(exc):
            return WriteConflict(f"writing to table {self.spec.table!r}: {_reason(exc)}")
        return translate(exc, self._engine, f"writing to table {self.spec.table!r} failed")

    def spare(self, *, steps_bound: bool = False) -> SqlSink | None:
        """A second connection for PostgreSQL appends and upserts into an existing table.

        Not for replace (one staging table, swapped in at the end) nor SQLite (one writer at a
        time), nor a table the first batch is still to create. Nor for an append whose Python
        steps set the pace: a second backend's COPY then only competes with them for the CPU
        (1M rows on 2 cores: 6.4-7.4 s instead of 6.0-6.1 s, measured), while an upsert's
        INSERT … ON CONFLICT gains (6.7-7.2 s instead of 7.8-8.5 s into an empty table).
        """
        if self.mode == "replace" or self._table is None:
            return None
        if steps_bound and self.mode == "append":
            return None
        return (
            SqlSink(self.spec, sibling=self) if isinstance(self._writer, PostgresWriter) else None
        )

    def blocks(self, other: Sink[Any]) -> bool:
        if not isinstance(other, SqlSink) or other._conn is None or self._conn is None:
            return False
        waiting = _psycopg(other._conn).info.backend_pid  # a property: no I/O on its connection
        blocking = self._conn.exec_driver_sql(
            "SELECT pg_backend_pid() = ANY(pg_blocking_pids(%(pid)s))", {"pid": waiting}
        ).scalar()
        return bool(blocking)

    def _singles(self, batch: Batch) -> Iterator[tuple[Batch, Row]]:
        """Each row of a batch as a batch of its own, with the row's values (text when raw)."""
        if batch.raw is None:
            for row in batch.rows:
                yield Batch(batch.columns, [row], batch.source, None, batch.key_columns), row
            return
        assert self._conn is not None
        from adf_core.connectors.pgcopy import BINARY_SIGNATURE, binary_tuples, text_tuples

        assert isinstance(self._writer, PostgresWriter) and self._table is not None
        oids = self._writer._column_oids(self._conn, self._table)
        types = [oids.get(c, 0) for c in batch.columns]  # 0: unknown, read as text
        binary = batch.raw.startswith(BINARY_SIGNATURE)  # formatted by a worker (see CopyRows)
        split = binary_tuples if binary else text_tuples
        for data, values in split(batch.raw, _psycopg(self._conn), types):
            single = Batch(batch.columns, [], batch.source, None, batch.key_columns)
            single.raw, single.raw_count = data, 1
            yield single, values

    def _write_rows(self, table: Table, batch: Batch) -> WriteResult:
        assert self._conn is not None and self._writer is not None
        if not len(batch):
            return WriteResult()
        writer: Any = self._writer  # only PostgresWriter is offered raw batches (raw_formats)
        rows = (
            batch.rows
            if batch.raw is None
            else RawCopy(batch.raw, batch.raw_count, batch.raw_unique)
        )
        if self.mode == "upsert":
            keys = list(self.spec.keys or [])
            unchanged = writer.upsert(
                self._conn, table, batch.columns, rows, keys, self.spec.skip_unchanged
            )
            return WriteResult(len(batch) - unchanged, unchanged)
        return WriteResult(writer.insert(self._conn, table, batch.columns, rows), 0)

    def _dead_letters(self, letters: DeadLetters) -> None:
        assert self._conn is not None
        if self._dead is None:
            self._dead = dead_letter_table(letters.table, MetaData())
        # Checked in every batch that has dead letters: a batch rolled back (and written again,
        # see WriteConflict) takes the table it created with it.
        create_once(self._conn, self._dead)
        when = letters.time or datetime.now().astimezone()
        self._conn.execute(
            insert(self._dead),
            [
                {
                    "flow": letters.flow_id,
                    "row": to_json(f.data),
                    "error": f.error,
                    "created_at": when,
                }
                for f in letters.failures
            ],
        )

    def _save_state(self, checkpoint: Checkpoint) -> None:
        assert self._conn is not None
        values = {
            "watermark": checkpoint.watermark.to_json() if checkpoint.watermark else None,
            "updated_at": datetime.now().astimezone(),
        }
        state = self._state
        done = self._conn.execute(
            update(state).where(state.c.flow_id == checkpoint.flow_id).values(values)
        )
        if done.rowcount == 0:
            self._conn.execute(insert(state).values(flow_id=checkpoint.flow_id, **values))


register("sql", SqlSource, SqlSink)

__all__ = ["GenericWriter", "PostgresWriter", "SqlSink", "SqlSource", "SqliteWriter"]
