"""COPY text lines assembled from columns (what a worker writes for the sink)."""

from __future__ import annotations

import pytest

from adf_core.connectors.pgcopy import text_lines


def test_fields_are_tab_separated_and_every_row_ends_its_line() -> None:
    columns = [["1", "2", "3"], ["a", "b\\tc", "\\N"], ["x", "", "z"]]

    assert text_lines(columns, 3) == "1\ta\tx\n2\tb\\tc\t\n3\t\\N\tz\n"


def test_one_column_is_one_field_per_line() -> None:
    assert text_lines([["7", "8"]], 2) == "7\n8\n"


def test_no_rows_is_no_text() -> None:
    assert text_lines([[], []], 0) == ""


def test_rows_of_no_columns_are_empty_lines() -> None:
    assert text_lines([], 2) == "\n\n"


def test_a_column_of_another_length_is_refused() -> None:
    with pytest.raises(ValueError):
        text_lines([["1", "2"], ["a"]], 2)
