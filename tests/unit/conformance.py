"""The conformance suite every connector passes, whatever its backend.

A connector module's test file builds a :class:`Harness` (a source over the sample rows, a sink,
and a way to read the sink back) and parametrizes ``harness`` with it; the tests below then run
unchanged. They pin the base-class contract: deterministic batches, resumption strictly after a
composite watermark, one transaction for rows + checkpoint, and a clean open/close life cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from adf_core.connectors.base import (
    Checkpoint,
    ReadRequest,
    Sink,
    Source,
)
from adf_core.errors import AdfError
from adf_core.messages import Batch, Untyped, Watermark

# (id, cursor, name): groups of three rows share a cursor value, so batch edges split ties.
SAMPLE = [(i, i // 3, f"row {i}") for i in range(1, 21)]
COLUMNS = ("id", "cursor", "name")


@dataclass
class Harness:
    """How the suite drives one connector."""

    name: str
    source: Callable[[int], Source[Any]]  # batch size -> an unopened source over SAMPLE
    sink: Callable[[], Sink[Any]]  # -> an unopened append sink with an empty target
    stored: Callable[[], list[tuple[Any, ...]]]  # the sink's rows, ordered by id


def read_all(source: Source[Any], after: Watermark | None = None) -> list[Batch]:
    with source:
        return list(source.read(ReadRequest(after=after)))


def test_reads_every_row_once_in_cursor_order(harness: Harness) -> None:
    batches = read_all(harness.source(4))
    rows = [tuple(r) for b in batches for r in b.rows]
    assert rows == SAMPLE
    assert [len(b) for b in batches] == [4, 4, 4, 4, 4]
    assert all(b.columns == COLUMNS for b in batches)
    assert batches[-1].watermark == Watermark(20 // 3, 20)


def test_resumes_strictly_after_a_watermark_inside_a_tie_group(harness: Harness) -> None:
    first = read_all(harness.source(4))[0]
    assert first.watermark == Watermark(1, 4)  # rows 3, 4, 5 share cursor 1
    rest = [tuple(r) for b in read_all(harness.source(4), first.watermark) for r in b.rows]
    assert rest == SAMPLE[4:]


def test_batches_offer_per_message_views(harness: Harness) -> None:
    message = next(read_all(harness.source(5))[0].messages())
    assert isinstance(message, Untyped)
    assert message.data == dict(zip(COLUMNS, SAMPLE[0], strict=True))
    assert message.key == "id=1"


def test_sink_writes_rows_and_checkpoint_together(harness: Harness) -> None:
    with harness.sink() as sink:
        assert sink.read_state("ns/flow") is None
        for batch in read_all(harness.source(8)):
            result = sink.write(batch, Checkpoint("ns/flow", batch.watermark))
            assert (result.written, result.skipped) == (len(batch), 0)
        sink.finish(None)
        assert sink.read_state("ns/flow") == Watermark(6, 20)
    assert harness.stored() == SAMPLE


def test_a_failed_batch_leaves_rows_and_checkpoint_unchanged(harness: Harness) -> None:
    batches = read_all(harness.source(10))
    with harness.sink() as sink:
        sink.write(batches[0], Checkpoint("ns/flow", batches[0].watermark))
        broken = Batch(COLUMNS, [*batches[1].rows, (1, 0, "duplicate key")], "", None)
        with pytest.raises(AdfError):
            sink.write(broken, Checkpoint("ns/flow", Watermark(99, 99)))
        assert sink.read_state("ns/flow") == batches[0].watermark
    assert harness.stored() == SAMPLE[:10]


def test_close_is_safe_after_a_failed_open(harness: Harness) -> None:
    source = harness.source(4)
    source.close()  # never opened: must not raise
    with harness.source(4) as opened:
        assert opened.columns == COLUMNS
