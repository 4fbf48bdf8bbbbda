"""``COPY … TO STDOUT`` read in batches of unparsed rows, at the level of libpq.

psycopg's :class:`~psycopg.Copy` hands out one row per round trip through its generator and
wait machinery (≈0.7 µs of Python per row, measured); a run that moves rows untouched between
two PostgreSQL databases spends most of its own CPU there, and that thread then also holds the
GIL that the writer thread needs. This loop calls libpq's ``PQgetCopyData`` through psycopg's
public ``pq`` wrapper instead (≈0.3 µs per row): every CopyData message of a ``COPY TO`` is
exactly one row (the protocol, and what :meth:`psycopg.Copy.read` documents), so batches are
cut by counting messages, without scanning for row ends. In binary, each batch is a whole binary
COPY stream of its own (header, its rows, trailer) that a sink reads as it is.

The statement runs in the connection's current transaction (the caller has started it); a
reader closed before the end cancels the statement and drains the connection, so the caller's
rollback finds it idle.
"""

from __future__ import annotations

import re
import select
import struct
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from itertools import pairwise
from operator import is_, itemgetter
from typing import Any, NamedTuple

import psycopg
from psycopg import abc, errors, pq
from psycopg.adapt import Transformer

from adf_core.errors import DataError
from adf_core.messages import Batch, Row, last_per_key

_COPY_OUT = pq.ExecStatus.COPY_OUT
_COMMAND_OK = pq.ExecStatus.COMMAND_OK
BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_BINARY_HEADER = BINARY_SIGNATURE + b"\x00\x00\x00\x00\x00\x00\x00\x00"  # flags, no extension
_BINARY_TRAILER = b"\xff\xff"


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


class CopyOut(NamedTuple):
    """Up to a batch of rows of a ``COPY … TO STDOUT``, unparsed."""

    data: bytes  # the rows; binary: a whole binary COPY stream of their own (header, trailer)
    rows: int
    last: bytes  # the last row alone (text: its line; binary: its tuple), for its watermark


def copy_out_batches(
    conn: psycopg.Connection[Any], select: str, size: int, *, binary: bool = False
) -> Generator[CopyOut, None, None]:
    """Yield the rows of ``COPY (select) TO STDOUT``, as text or binary, in batches of up to
    ``size`` rows.

    ``select`` has its parameters merged already (COPY takes none from the protocol). Database
    errors are raised as psycopg's exceptions, like the driver's own COPY does.
    """
    pgconn = conn.pgconn
    encoding = conn.info.encoding
    wait = _Wait(pgconn)
    statement = f"COPY ({select}) TO STDOUT" + (" (FORMAT binary)" if binary else "")
    pgconn.send_query(statement.encode(encoding))
    wait.flush()
    first = wait.result()
    if first is None or first.status != _COPY_OUT:
        _drain(wait)
        if first is None:
            raise psycopg.OperationalError("the COPY statement returned no result")
        raise errors.error_from_result(first, encoding=encoding)
    head, tail = (_BINARY_HEADER, _BINARY_TRAILER) if binary else (b"", b"")
    finished = False
    try:
        buffer, count, get = bytearray(head), 0, pgconn.get_copy_data
        last: bytes | memoryview = b""
        if binary:  # the server sends the stream's header in front of the first row
            opening = _message(pgconn, wait, encoding)
            if opening is None:  # the statement failed before its first row: its result says why
                _raise_for_results(wait, encoding)
            if opening is None or not opening.startswith(_BINARY_HEADER):
                raise psycopg.OperationalError("binary COPY data without the expected header")
            last = opening[len(_BINARY_HEADER) :]
            if last and last != _BINARY_TRAILER:
                buffer += last
                count = 1
        while True:
            if count == size:
                buffer += tail
                yield CopyOut(bytes(buffer), count, bytes(last))
                del buffer[len(head) :]
                count = 0
            length, data = get(1)
            # every message is one row, but for binary COPY's 2-byte trailer (a tuple is longer)
            if length > 2 or (length > 0 and tail != data):
                buffer += data
                count += 1
                last = data
            elif length == 0:
                wait.readable()
            elif length < 0:
                _raise_unless_done(length, pgconn, encoding)
                break
        _raise_for_results(wait, encoding)
        finished = True
        if count:
            buffer += tail
            yield CopyOut(bytes(buffer), count, bytes(last))
    finally:
        if not finished:
            _cancel(conn, wait)


def _message(pgconn: pq.abc.PGconn, wait: _Wait, encoding: str) -> bytes | None:
    """The next CopyData message, waiting for it; None at the end of the data."""
    while True:
        length, data = pgconn.get_copy_data(1)
        if length > 0:
            return bytes(data)
        if length == 0:
            wait.readable()
        else:
            _raise_unless_done(length, pgconn, encoding)
            return None


def _raise_for_results(wait: _Wait, encoding: str) -> None:
    """Read the statement's results once its data has ended; raise the error of a failed one."""
    while (result := wait.result()) is not None:
        if result.status != _COMMAND_OK:
            _drain(wait)
            raise errors.error_from_result(result, encoding=encoding)


def _raise_unless_done(length: int, pgconn: pq.abc.PGconn, encoding: str) -> None:
    """``PQgetCopyData`` returned ``length`` < 0: -1 is the end of the data, anything else an
    error."""
    if length != -1:
        raise psycopg.OperationalError(
            f"error receiving COPY data: {pgconn.get_error_message(encoding)}"
        )


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


_INT2, _INT4 = struct.Struct("!h"), struct.Struct("!i")
PART_BYTES = 256 * 1024  # of COPY text: ~2,300 products rows (see runner._work_raw)
BinaryTypes = Callable[[Sequence[str], Sequence[Row]], "list[int] | None"]


Convert = Callable[[str], Any]
NULL = "\\N"
TEXT_OID = 25
_ESCAPED = re.compile(r"\\(.)")
_UNESCAPED = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu",
                        "Etc/Zulu"})  # fmt: skip


def _unescape_text(field: str) -> str:
    """A COPY text field's value: ``\\t`` is a tab, ``\\\\`` a backslash (what COPY TO writes)."""
    return _ESCAPED.sub(lambda m: _UNESCAPED.get(m[1], m[1]), field)


def _text_converters(
    oids: Sequence[int], timezone: tzinfo, date_style: str | None
) -> list[Convert | None] | None:
    """How to read each column's COPY text into the value psycopg's loader would give.

    None for a text column (its text is its value); None in place of the list when a column's
    type is not one of these. Only immutable values: a value that a step leaves alone is then
    written back as the text it was read as (see :class:`TextRows`). Dates need the ISO style.
    """
    iso = (date_style or "").startswith("ISO")

    def aware(text: str) -> datetime:  # psycopg gives the session's time zone, not an offset
        return datetime.fromisoformat(text).astimezone(timezone)

    # In UTC (the usual server setting) the +00 offset is read as datetime.timezone.utc, the
    # same instants and arithmetic as the zone psycopg names: a tenth of the cost of converting.
    utc = getattr(timezone, "key", None) in _UTC_NAMES or timezone is UTC

    known: dict[int, Convert | None] = {
        16: "t".__eq__, 20: int, 21: int, 23: int, 700: float, 701: float, 1700: Decimal,
        19: None, 25: None, 1042: None, 1043: None,
    }  # fmt: skip
    if iso:
        known |= {
            1082: date.fromisoformat,
            1114: datetime.fromisoformat,
            1184: datetime.fromisoformat if utc else aware,
        }
    if not all(oid in known for oid in oids):
        return None
    return [known[oid] for oid in oids]


def _read_column(convert: Convert | None, texts: Sequence[str]) -> Sequence[Any]:
    """One column of a batch: its values from its COPY texts (``\\N`` is NULL)."""
    if convert is None:  # text: only NULLs and escapes (a backslash in either) need work
        if "\\" not in "".join(texts):
            return texts
        return [None if t == NULL else _unescape_text(t) if "\\" in t else t for t in texts]
    if NULL not in texts:  # no other type's text holds a backslash
        return list(map(convert, texts))
    return [None if t == NULL else convert(t) for t in texts]


def _columns_of(records: list[dict[str, Any]], keys: tuple[str, ...]) -> list[list[Any]] | None:
    """The records' values column by column, when every record has exactly ``keys`` (what a
    step that edits rows in place keeps); else None."""
    if sum(map(len, records)) != len(keys) * len(records):
        return None
    try:  # as many keys each, all of them present: the same keys
        return [list(map(itemgetter(key), records)) for key in keys]
    except KeyError:
        return None


def text_lines(texts: Sequence[Sequence[str]], rows: int) -> str:
    """COPY text of ``rows`` rows given column by column: tab-separated fields, a line per row.

    One list holds every field with the separator after it, filled a column at a time by slice
    assignment, then one join: no tuple and no string per row (0.08 instead of 0.17 µs per row
    of seven columns, measured). A column of another length raises ValueError.
    """
    if not texts:
        return "\n" * rows  # a row of no columns is an empty line
    width = 2 * len(texts)
    parts = ["\t"] * (width * rows)
    for position, column in enumerate(texts):
        parts[2 * position :: width] = column
    parts[width - 1 :: width] = ["\n"] * rows
    return "".join(parts)


class TextRows(list[Row]):
    """Rows read from COPY text column by column, which keeps each column's text and values.

    A value that the steps leave alone (the very object read) is written back as the text it
    was read as: the text is already what COPY takes, so the untouched columns of a batch cost
    no formatting at all (see :meth:`CopyRows.format`).
    """

    def __init__(self, texts: Sequence[Sequence[str]], values: Sequence[Sequence[Any]]) -> None:
        super().__init__(zip(*values, strict=True))
        self.texts, self.values = texts, values


class CopyRows:
    """Converts between COPY data and row tuples, without a connection once built.

    Built from the source query's result columns (parsing COPY text, with the source
    connection's loaders) and the sink connection (formatting, with its dumpers and encoding);
    both are kept in memory, so a forked worker can use them without ever touching either
    connection. Rows go out as binary COPY when ``binary`` finds the sink's column types for
    every value (cheaper to format and for the server to read), else as COPY text.

    When every source column has a type that :func:`_text_converters` reads, a batch is read
    column by column in C-speed loops, and rows go out as COPY text that reuses the text of
    every value a step left alone: ~2 µs per row of a seven-column product instead of ~5 µs
    through psycopg's per-row parse and binary format (measured in a worker, 10,000-row
    batches). Both encodings are the same: the run passes raw batches only then.
    """

    def __init__(
        self,
        loaders: abc.Transformer,
        sink: psycopg.Connection[Any],
        binary: BinaryTypes | None = None,
        keys: Sequence[str] = (),
        converters: list[Convert | None] | None = None,
    ) -> None:
        codec = _row_codec()
        assert codec is not None
        self._parse, self._format_text, self._format_binary, _ = codec
        self._loaders, self._text, self._binary = loaders, Transformer(sink), Transformer(sink)
        self._binary_types, self._keys, self._converters = binary, keys, converters
        self._encoding = sink.info.encoding

    @classmethod
    def build(
        cls,
        source: psycopg.Connection[Any],
        query: str,
        params: Any,
        sink: psycopg.Connection[Any],
        binary: BinaryTypes | None = None,
        keys: Sequence[str] = (),
    ) -> CopyRows | None:
        """None when psycopg offers no row codec (see :func:`_row_codec`).

        ``keys`` (an upsert's) drop all but the last of rows sharing them, before formatting.
        """
        if _row_codec() is None:
            return None
        loaders = Transformer(source)
        with source.cursor() as cur:
            cur.execute(f"SELECT * FROM ({query}) AS adf_probe LIMIT 0", params)
            assert cur.pgresult is not None
            loaders.set_pgresult(cur.pgresult)  # the column count and types of a row
            oids = [column.type_code for column in cur.description or ()]
        info = source.info
        converters = _text_converters(oids, info.timezone, info.parameter_status("DateStyle"))
        return cls(loaders, sink, binary, keys, converters)

    def parts(self, data: bytes) -> list[bytes]:
        """COPY text cut at line ends into parts of about :data:`PART_BYTES` (a newline byte
        always ends a row: one inside a value is escaped)."""
        count = round(len(data) / PART_BYTES)
        cuts = [0]
        for i in range(1, count):
            cut = data.find(b"\n", len(data) * i // count) + 1
            if cuts[-1] < cut < len(data):
                cuts.append(cut)
        cuts.append(len(data))
        return [data[start:end] for start, end in pairwise(cuts)]

    def parse(self, data: bytes) -> list[Row]:
        """The rows of a batch of COPY text (each line ends with a newline)."""
        try:
            if self._converters is not None:
                return self._read_columns(data)
        except (TypeError, ValueError, ArithmeticError):
            pass  # e.g. a timestamp past year 9999: psycopg's loaders say what is wrong
        parse, loaders = self._parse, self._loaders
        try:
            return [parse(line, loaders) for line in data.splitlines(keepends=True)]
        except (psycopg.Error, TypeError, ValueError, ArithmeticError) as exc:
            raise DataError(
                f"reading the source failed: a value does not fit its column: {exc}"
            ) from None

    def _read_columns(self, data: bytes) -> TextRows:
        assert self._converters is not None
        text = data.decode(self._encoding)
        # Tabs and newlines inside values are escaped: every row is its columns' fields in order,
        # so one split of the whole batch and a slice per column give the columns.
        fields = text.replace("\n", "\t").split("\t")
        fields.pop()  # after the last row's newline
        width = len(self._converters)
        if len(fields) != width * text.count("\n"):
            raise ValueError("a row has another number of fields than the query's columns")
        texts = [fields[i::width] for i in range(width)]
        return TextRows(texts, list(map(_read_column, self._converters, texts)))

    def format(self, records: list[dict[str, Any]], read: Batch, origin: list[int]) -> Batch | None:
        """The records as a batch of COPY data; None when a value has no text form here (e.g.
        a dict).

        ``read`` is the parsed batch the records came from and ``origin`` the position there of
        each record (see :class:`TextRows`).
        """
        columns = tuple(records[0]) if records else ()
        values, data = None, None
        if records and isinstance(read.rows, TextRows):
            values = _columns_of(records, columns)
        if values is not None:
            kept = self._last_per_key(columns, values)
            if kept is not None:
                values = [[column[i] for i in kept] for column in values]
                origin = [origin[i] for i in kept]
            data = self._reusing_text(columns, values, read, origin)
        if data is None:
            batch = Batch.from_dicts(records, like=read)
            columns, rows = batch.columns, batch.rows
            kept = last_per_key(columns, rows, self._keys) if self._keys and rows else None
            rows = rows if kept is None else [rows[i] for i in kept]
            types = self._binary_types(columns, rows) if self._binary_types and rows else None
            data = self._binary_data(rows, types) if types is not None else None
            if data is None:
                data = self._text_data(rows)
        if data is None:
            return None
        # counted as the rows the step produced, duplicates included, as the row path counts them
        return Batch(columns, [], read.source, read.watermark, read.key_columns, read.schema,
                     data, len(records), bool(self._keys))  # fmt: skip

    def join(
        self, formatted: Sequence[Batch | None], records: Sequence[list[dict[str, Any]]]
    ) -> Batch | None:
        """The formatted parts as one batch: their data end to end (binary: in one stream).

        An upsert's parts each keep one row per key; the batch is ``raw_unique`` only if no key
        is in two parts (else the sink keeps the last of each key, in SQL).
        """
        if any(part is None for part in formatted):
            return None
        parts = [part for part in formatted if part is not None and part.raw_count]
        if len(parts) <= 1:
            return parts[0] if parts else formatted[0]
        data = [part.raw or b"" for part in parts]
        binary = {d.startswith(BINARY_SIGNATURE) for d in data}
        if len(binary) > 1 or len({part.columns for part in parts}) > 1:
            return None
        if binary.pop():
            tuples = (d[len(_BINARY_HEADER) : -len(_BINARY_TRAILER)] for d in data)
            data = [_BINARY_HEADER, *tuples, _BINARY_TRAILER]
        first = parts[0]
        return replace(
            first,
            raw=b"".join(data),
            raw_count=sum(part.raw_count for part in parts),
            raw_unique=bool(self._keys) and _keys_disjoint(records, self._keys),
        )

    def _last_per_key(
        self, columns: Sequence[str], values: Sequence[Sequence[Any]]
    ) -> list[int] | None:
        """For an upsert: the positions of the last row of each key (None: all rows)."""
        if not self._keys or not values:
            return None
        keys = [values[columns.index(k)] for k in self._keys]
        return last_per_key(self._keys, list(zip(*keys, strict=True)), self._keys)

    def _reusing_text(
        self,
        columns: Sequence[str],
        values: Sequence[Sequence[Any]],
        read: Batch,
        origin: list[int],
    ) -> bytes | None:
        """COPY text of the columns' ``values``: a column whose every value is the object read
        (at its row's origin) is the text read; any other is formatted."""
        assert isinstance(read.rows, TextRows)
        positions = {name: p for p, name in enumerate(read.columns)}
        in_order = len(origin) == len(read.rows) and origin == list(range(len(read.rows)))

        def at_origin(column: Sequence[Any]) -> Sequence[Any]:
            return column if in_order else list(map(column.__getitem__, origin))

        texts: list[Sequence[str]] = []
        for name, column in zip(columns, values, strict=True):
            p = positions.get(name)
            if p is not None and all(map(is_, column, at_origin(read.rows.values[p]))):
                texts.append(at_origin(read.rows.texts[p]))
                continue
            formatted = self._column_text(column)
            if formatted is None:
                return None
            texts.append(formatted)
        return text_lines(texts, len(origin)).encode(self._encoding)

    def _column_text(self, column: Sequence[Any]) -> Sequence[str] | None:
        """COPY text of a column's values as psycopg's text dumpers write them."""
        kinds = set(map(type, column))
        if kinds == {str}:
            joined = "".join(column)
            if any(c in joined for c in "\\\t\n\r"):
                return [value.translate(_ESCAPES) for value in column]
            return column
        if kinds == {int}:
            return list(map(str, column))
        buffer = bytearray()
        fmt, dumpers = self._format_text, self._text
        try:
            for value in column:
                fmt((value,), dumpers, buffer)
        except (psycopg.Error, TypeError, ValueError):
            return None
        texts = buffer.decode(self._encoding).split("\n")
        texts.pop()
        return texts

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


def _keys_disjoint(parts: Sequence[list[dict[str, Any]]], keys: Sequence[str]) -> bool:
    """Whether no key is in the records of two parts (a missing or unhashable one: unknown)."""
    key_of = itemgetter(*keys)
    seen: set[Any] = set()
    total = 0
    try:
        for records in parts:
            mine = set(map(key_of, records))
            total += len(mine)
            seen |= mine
    except (KeyError, TypeError):
        return False
    return len(seen) == total


# Built-in types whose binary COPY form one server writes and another reads alike, by the form
# they share (text, varchar and char send the same bytes). Not reg* types (their binary form is
# an oid of one database), records, arrays or user types: those go as text.
_PORTABLE_BINARY = (16, 17, 20, 21, 23, TEXT_OID, 114, 700, 701, 1082, 1083, 1114, 1184, 1186,
                    1266, 1700, 2950, 3802)  # fmt: skip
_BINARY_FORMS = {**{oid: oid for oid in _PORTABLE_BINARY}, 1042: TEXT_OID, 1043: TEXT_OID}


def same_binary_form(source: int, sink: int | None) -> bool:
    """Whether a value of type oid ``source`` in binary COPY is one a ``sink`` column reads."""
    form = _BINARY_FORMS.get(source)
    return form is not None and form == _BINARY_FORMS.get(sink or 0)


def binary_fields(data: bytes, position: int = 0) -> tuple[list[bytes | None], int]:
    """The fields of the binary COPY tuple at ``position`` (None for NULL), and where it ends."""
    fields: list[bytes | None] = []
    count = _INT2.unpack_from(data, position)[0]
    position += _INT2.size
    for _ in range(count):
        length = _INT4.unpack_from(data, position)[0]
        position += _INT4.size
        fields.append(None if length < 0 else data[position : position + length])
        position += max(length, 0)
    return fields, position


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
    while _INT2.unpack_from(data, position)[0] != -1:
        start = position
        position = binary_fields(data, position)[1]
        row = data[start:position]
        yield _BINARY_HEADER + row + _BINARY_TRAILER, parse(row, loaders)


def load_field(loader: abc.Loader, field: bytes, encoding: str) -> Any:
    """A COPY text field's value as ``loader`` reads it: ``\\N`` is NULL, escapes are undone."""
    if field == b"\\N":
        return None
    if b"\\" in field:
        field = _unescape_text(field.decode(encoding)).encode(encoding)
    return loader.load(field)


def text_tuples(
    data: bytes, sink: psycopg.Connection[Any], types: Sequence[int]
) -> Iterator[tuple[bytes, Row]]:
    """Each row of COPY text as COPY text of its own, with its values as the sink's column types
    read them (its fields as text where they do not parse: likely why the sink refused it).

    For writing a refused batch row by row (onError skip or deadLetter): not a fast path.
    """
    encoding = sink.info.encoding
    loaders = Transformer(sink)
    typed = [loaders.get_loader(oid, pq.Format.TEXT) for oid in types]
    text = loaders.get_loader(TEXT_OID, pq.Format.TEXT)
    for line in data.splitlines(keepends=True):
        fields = line[:-1].split(b"\t")
        try:
            values = [load_field(ld, f, encoding) for ld, f in zip(typed, fields, strict=True)]
        except (psycopg.Error, TypeError, ValueError, ArithmeticError):
            values = [load_field(text, f, encoding) for f in fields]
        yield line, values
