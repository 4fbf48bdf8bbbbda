"""The runner's threads: read-ahead and write-behind keep order, surface errors, stop cleanly."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from adf_core.messages import Batch
from adf_core.runner import _WriteBehind, prefetch


def batches(
    count: int, fail_at: int | None = None, closed: threading.Event | None = None
) -> Iterator[Batch]:
    try:
        for i in range(count):
            if i == fail_at:
                raise RuntimeError(f"source broke at batch {i}")
            yield Batch(("n",), [(i,)])
    finally:
        if closed is not None:
            closed.set()


def test_batches_arrive_in_order() -> None:
    assert [b.rows[0][0] for b in prefetch(batches(10))] == list(range(10))


def test_a_source_error_is_raised_in_the_consumer_after_the_good_batches() -> None:
    seen = []
    with pytest.raises(RuntimeError, match="source broke at batch 3"):
        for batch in prefetch(batches(10, fail_at=3)):
            seen.append(batch.rows[0][0])
    assert seen == [0, 1, 2]


def test_stopping_early_closes_the_source_and_joins_the_reader() -> None:
    closed = threading.Event()
    before = threading.active_count()
    with closing(prefetch(batches(1000, closed=closed))) as stream:
        assert next(stream).rows == [(0,)]
    assert closed.is_set()
    assert threading.active_count() == before


def test_write_behind_keeps_order_and_drops_batches_after_a_failure() -> None:
    written: list[int] = []

    def write(job: Any) -> None:
        n = job[0].rows[0][0]
        if n == 3:
            raise ValueError("sink refused batch 3")
        written.append(n)

    writer = _WriteBehind(write)
    with pytest.raises(ValueError, match="batch 3"):
        try:
            for batch in batches(10):
                writer.submit((batch, batch, [], None, None))
        finally:
            writer.close()
            writer.check()
    assert written == [0, 1, 2]
