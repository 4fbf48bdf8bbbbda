"""The runner's threads: read-ahead and write-behind keep order, surface errors, stop cleanly."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from adf_core import workers
from adf_core.errors import DataError, SpecError
from adf_core.messages import Batch, RowFailure
from adf_core.runner import SINK_CONNECTIONS_ENV, _sink_connections, _WriteBehind, prefetch


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

    def write(job: Any, number: int, lane: int) -> None:
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


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [("max", "100000", None), ("-1", "100000", None), ("150000", "100000\n", 2),
     ("50000", "100000", 1), ("200000", "100000", 2), ("junk", "100000", None)],
)  # fmt: skip
def test_a_cgroup_cpu_quota_in_whole_cpus(quota: str, period: str, cpus: int | None) -> None:
    assert workers.cpus_of_quota(quota, period) == cpus


def test_worker_count_follows_the_environment_then_the_cpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(workers.WORKERS_ENV, "3")
    assert workers.worker_count() == 3
    monkeypatch.setenv(workers.WORKERS_ENV, "0")
    assert workers.worker_count() == 0
    monkeypatch.setenv(workers.WORKERS_ENV, "none")
    with pytest.raises(SpecError, match="ADF_STEP_WORKERS: must be a whole number"):
        workers.worker_count()
    monkeypatch.delenv(workers.WORKERS_ENV)
    monkeypatch.setattr(workers, "cgroup_cpu_limit", lambda: 1)  # a pod limited to one CPU
    assert workers.worker_count() == 1
    monkeypatch.setattr(workers, "cgroup_cpu_limit", lambda: None)
    assert workers.worker_count() == len(os.sched_getaffinity(0))


def double(batch: Batch) -> tuple[Batch, list[RowFailure]]:
    if batch.rows and batch.rows[0][0] == "boom":
        raise DataError("row n=boom: refused", row_key="n=boom")
    return Batch(batch.columns, [(2 * r[0],) for r in batch.rows]), []


def test_workers_return_results_in_order_and_raise_their_errors() -> None:
    pool = workers.Workers(2, double)
    try:
        handed = [pool.submit(Batch(("n",), [(i,), (i + 1,)])) for i in range(4)]
        results = [pool.result(index)[0].rows for index in handed]
        assert results == [[(0,), (2,)], [(2,), (4,)], [(4,), (6,)], [(6,), (8,)]]
        with pytest.raises(DataError, match="refused") as raised:
            pool.result(pool.submit(Batch(("n",), [("boom",)])))
        assert raised.value.row_key == "n=boom"
    finally:
        pool.close()


@pytest.mark.parametrize(("value", "connections"), [(None, 2), ("1", 1), ("0", 1), ("5", 2)])
def test_sink_connections_are_one_or_two(
    monkeypatch: pytest.MonkeyPatch, value: str | None, connections: int
) -> None:
    if value is None:
        monkeypatch.delenv(SINK_CONNECTIONS_ENV, raising=False)
    else:
        monkeypatch.setenv(SINK_CONNECTIONS_ENV, value)
    assert _sink_connections() == connections
