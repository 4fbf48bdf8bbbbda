"""``COPY … TO STDOUT`` read in batches of unparsed rows, at the level of libpq.

psycopg's :class:`~psycopg.Copy` hands out one row per round trip through its generator and
wait machinery (≈0.7 µs of Python per row, measured); a run that moves rows untouched between
two PostgreSQL databases spends most of its own CPU there, and that thread then also holds the
GIL that the writer thread needs. This loop calls libpq's ``PQgetCopyData`` through psycopg's
public ``pq`` wrapper instead (≈0.3 µs per row): every CopyData message of a ``COPY TO`` is
exactly one row (the protocol, and what :meth:`psycopg.Copy.read` documents), so batches are
cut by counting messages, without scanning for row ends.

The statement runs in the connection's current transaction (the caller has started it); a
reader closed before the end cancels the statement and drains the connection, so the caller's
rollback finds it idle.
"""

from __future__ import annotations

import select
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import abc, errors, pq
from psycopg.adapt import Transformer

from adf_core.errors import DataError
from adf_core.messages import Batch, Row

_COPY_OUT = pq.ExecStatus.COPY_OUT
_COMMAND_OK = pq.ExecStatus.COMMAND_OK


class _Wait:
    """Blocks until the connection's socket is ready, with the GIL released."""

    def __init__(self, pgconn: pq.abc.PGconn) -> None:
        self._pgconn = pgconn
        self._read = select.poll()
        self._read.register(pgconn.socket, select.POLLIN)
        self._write = select.poll()
        self._write.register(pgconn.socket, select.POLLOUT)

    def readable(self) -> None:
        self._read.poll()
        self._pgconn.consume_input()

    def flush(self) -> None:
        while self._pgconn.flush() == 1:
            self._write.poll()

    def result(self) -> pq.abc.PGresult | None:
        while True:
            self._pgconn.consume_input()
            if not self._pgconn.is_busy():
                return self._pgconn.get_result()
            self._read.poll()


def copy_out_batches(
    conn: psycopg.Connection[Any], statement: str, size: int
) -> Iterator[tuple[bytes, int]]:
    """Yield ``(COPY text of up to size rows, row count)`` for a complete ``COPY … TO STDOUT``.

    ``statement`` has its parameters merged already (COPY takes none from the protocol).
    Database errors are raised as psycopg's exceptions, like the driver's own COPY does.
    """
    pgconn = conn.pgconn
    encoding = conn.info.encoding
    wait = _Wait(pgconn)
    pgconn.send_query(statement.encode(encoding))
    wait.flush()
    first = wait.result()
    if first is None or first.status != _COPY_OUT:
        _drain(wait)
        if first is None:
            raise psycopg.OperationalError("the COPY statement returned no result")
        raise errors.error_from_result(first, encoding=encoding)
    finished = False
    try:
        buffer, count, get = bytearray(), 0, pgconn.get_copy_data
        while True:
            length, data = get(1)
            if length > 0:
                buffer += data
                count += 1
                if count == size:
                    yield bytes(buffer), count
                    buffer.clear()
                    count = 0
            elif length == 0:
                wait.readable()
            elif length == -1:
                break
            else:
                raise psycopg.OperationalError(
                    f"error receiving COPY data: {pgconn.get_error_message(encoding)}"
                )
        while (result := wait.result()) is not None:
            if result.status != _COMMAND_OK:
                _drain(wait)
                raise errors.error_from_result(result, encoding=encoding)
        finished = True
        if count:
            yield bytes(buffer), count
    finally:
        if not finished:
            _cancel(conn, wait)


def _cancel(conn: psycopg.Connection[Any], wait: _Wait) -> None:
    """Stop a COPY still sending rows, and read what is left (the cancel's error included)."""
    try:
        if conn.pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
            conn.cancel_safe()
            while (length := conn.pgconn.get_copy_data(1)[0]) >= 0:
                if length == 0:
                    wait.readable()
        _drain(wait)
    except psycopg.Error:
        pass  # the connection is broken: closing it is all that is left, and the caller does


def _drain(wait: _Wait) -> None:
    while wait.result() is not None:
        pass


Parse = Callable[..., tuple[Any, ...]]
Format = Callable[..., bytearray]


def _row_codec() -> tuple[Parse, Format, Format, Parse] | None:
    """psycopg's per-row COPY parsers and formatters (its C versions when installed).

    They are internals of psycopg (``psycopg._copy_base``, what :meth:`psycopg.Copy.read_row`
    and :meth:`psycopg.Copy.write_row` call for each row). Called directly over a whole batch
    they parse or format it in one loop, with no Copy object and no I/O, which is what a worker
    process needs. Should a psycopg release move them, this returns None and the engine keeps
    to its in-process path.
    """
    try:
        from psycopg._copy_base import (
            format_row_binary,
            format_row_text,
            parse_row_binary,
            parse_row_text,
        )
    except ImportError:
        return None
    return parse_row_text, format_row_text, format_row_binary, parse_row_binary


BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_BINARY_HEADER = BINARY_SIGNATURE + b"\x00\x00\x00\x00\x00\x00\x00\x00"  # flags, no extension
_BINARY_TRAILER = b"\xff\xff"
_INT2, _INT4 = struct.Struct("!h"), struct.Struct("!i")
BinaryTypes = Callable[[Sequence[str], Sequence[Row]], "list[int] | None"]


class CopyRows:
    """Converts between COPY data and row tuples, without a connection once built.

    Built from the source query's result columns (parsing COPY text, with the source
    connection's loaders) and the sink connection (formatting, with its dumpers and encoding);
    both are kept in memory, so a forked worker can use them without ever touching either
    connection. Rows go out as binary COPY when ``binary`` finds the sink's column types for
    every value (cheaper to format and for the server to read), else as COPY text.
    """

    def __init__(
        self,
        loaders: abc.Transformer,
        sink: psycopg.Connection[Any],
        binary: BinaryTypes | None = None,
        unique: Callable[[Sequence[str], list[Row]], list[Row]] | None = None,
    ) -> None:
        codec = _row_codec()
        assert codec is not None
        self._parse, self._format_text, self._format_binary, _ = codec
        self._loaders, self._text, self._binary = loaders, Transformer(sink), Transformer(sink)
        self._binary_types, self._unique = binary, unique

    @classmethod
    def build(
        cls,
        source: psycopg.Connection[Any],
        query: str,
        params: Any,
        sink: psycopg.Connection[Any],
        binary: BinaryTypes | None = None,
        unique: Callable[[Sequence[str], list[Row]], list[Row]] | None = None,
    ) -> CopyRows | None:
        """None when psycopg offers no row codec (see :func:`_row_codec`).

        ``unique`` drops rows that share the sink's key (for an upsert), before formatting.
        """
        if _row_codec() is None:
            return None
        loaders = Transformer(source)
        with source.cursor() as cur:
            cur.execute(f"SELECT * FROM ({query}) AS adf_probe LIMIT 0", params)
            assert cur.pgresult is not None
            loaders.set_pgresult(cur.pgresult)  # the column count and types of a row
        return cls(loaders, sink, binary, unique)

    def parse(self, data: bytes) -> list[Row]:
        """The rows of a batch of COPY text (each line ends with a newline)."""
        parse, loaders = self._parse, self._loaders
        try:
            return [parse(line, loaders) for line in data.splitlines(keepends=True)]
        except (psycopg.Error, TypeError, ValueError, ArithmeticError) as exc:
            raise DataError(
                f"reading the source failed: a value does not fit its column: {exc}"
            ) from None

    def format(self, batch: Batch) -> Batch | None:
        """The batch as COPY data; None when a value has no text form here (e.g. a dict)."""
        rows = batch.rows if self._unique is None else self._unique(batch.columns, batch.rows)
        types = self._binary_types(batch.columns, rows) if self._binary_types and rows else None
        data = self._binary_data(rows, types) if types is not None else None
        if data is None:
            data = self._text_data(rows)
        if data is None:
            return None
        unique = self._unique is not None
        # counted as the rows the step produced, duplicates included, as the row path counts them
        return Batch(batch.columns, [], batch.source, batch.watermark, batch.key_columns,
                     batch.schema, data, len(batch.rows), unique)  # fmt: skip

    def _text_data(self, rows: Sequence[Row]) -> bytes | None:
        buffer = bytearray()
        fmt, dumpers = self._format_text, self._text
        try:
            for row in rows:
                fmt(row, dumpers, buffer)
        except (psycopg.Error, TypeError, ValueError):
            return None
        return bytes(buffer)

    def _binary_data(self, rows: Sequence[Row], types: list[int]) -> bytes | None:
        buffer = bytearray(_BINARY_HEADER)
        fmt, dumpers = self._format_binary, self._binary
        try:
            dumpers.set_dumper_types(types, pq.Format.BINARY)
            for row in rows:
                fmt(row, dumpers, buffer)
        except (psycopg.Error, TypeError, ValueError, OverflowError):
            return None  # e.g. an int too large for its column: text, which the server judges
        buffer += _BINARY_TRAILER
        return bytes(buffer)


def binary_tuples(
    data: bytes, sink: psycopg.Connection[Any], types: Sequence[int]
) -> Iterator[tuple[bytes, Row]]:
    """Each row of binary COPY data as binary COPY data of its own, with its values.

    For writing a refused batch row by row (onError skip or deadLetter): not a fast path.
    """
    codec = _row_codec()
    assert codec is not None
    parse = codec[3]
    loaders = Transformer(sink)
    loaders.set_loader_types(list(types), pq.Format.BINARY)
    position = len(_BINARY_HEADER)
    while (fields := _INT2.unpack_from(data, position)[0]) != -1:
        start = position
        position += _INT2.size
        for _ in range(fields):
            length = _INT4.unpack_from(data, position)[0]
            position += _INT4.size + max(length, 0)
        row = data[start:position]
        yield _BINARY_HEADER + row + _BINARY_TRAILER, parse(row, loaders)
