"""Pure helpers of the binary COPY path (adf_core.connectors.pgcopy): which column types may
pass between two databases as binary COPY, and reading the fields of one binary tuple."""

from __future__ import annotations

import struct

import pytest

from adf_core.connectors.pgcopy import binary_fields, same_binary_form

INT4, INT8, TEXT, VARCHAR, BPCHAR, NUMERIC, TIMESTAMPTZ, TIMESTAMP = (
    23, 20, 25, 1043, 1042, 1700, 1184, 1114
)  # fmt: skip
REGCLASS, JSON, JSONB, RECORD = 2205, 114, 3802, 2249


@pytest.mark.parametrize(
    ("source", "sink"),
    [(INT8, INT8), (NUMERIC, NUMERIC), (TIMESTAMPTZ, TIMESTAMPTZ), (TEXT, VARCHAR),
     (VARCHAR, TEXT), (BPCHAR, TEXT), (JSONB, JSONB)],
)  # fmt: skip
def test_types_of_one_binary_form_pass_as_binary(source: int, sink: int) -> None:
    assert same_binary_form(source, sink)


@pytest.mark.parametrize(
    ("source", "sink"),
    [(INT4, INT8), (NUMERIC, INT8), (TIMESTAMP, TIMESTAMPTZ), (JSON, JSONB), (TEXT, None),
     (REGCLASS, REGCLASS), (RECORD, RECORD), (16384, 16384)],
)  # fmt: skip
def test_other_or_unportable_types_go_as_text(source: int, sink: int | None) -> None:
    """Another type, a column the sink lacks, an oid of one database (reg*), a record or a
    user type (whose oid differs between databases)."""
    assert not same_binary_form(source, sink)


def test_binary_fields_reads_values_and_nulls_and_where_the_tuple_ends() -> None:
    row = struct.pack("!hi4sii2s", 3, 4, b"\x00\x00\x00\x07", -1, 2, b"hi")

    fields, end = binary_fields(row + b"\xff\xff")

    assert fields == [b"\x00\x00\x00\x07", None, b"hi"]
    assert end == len(row)
