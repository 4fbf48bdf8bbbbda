"""Two sink connections write consecutive batches at once: same rows, same order, same errors.

Batches still commit one after the other, so everything a single connection guarantees holds;
what is new is that two batches may touch the same key at the same time.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from adf_core.connectors.base import Checkpoint, DeadLetters, WriteConflict
from adf_core.connectors.sql import SqlSink
from adf_core.errors import DataError
from adf_core.messages import Batch, Watermark
from adf_core.runner import SINK_CONNECTIONS_ENV, _in_turn, _Turns
from adf_core.spec import SqlSinkSpec
from tests.support import products
from tests.support.pgflows import FlowDatabases

pytestmark = pytest.mark.postgres

DATA, INVALID = 5, 3
SOURCE = {"table": "products", "batchSize": 1000,
          "cursor": {"column": "updated_at", "tieBreaker": "id"}}  # fmt: skip


def sku_unique_sink(dbs: FlowDatabases, rows: int = 2000) -> None:
    """Rows 1000 and 1001, the last of batch 0 and the first of batch 1, share their SKU."""
    with dbs.source() as conn:
        products.create_products(conn, rows)
        conn.execute("UPDATE products SET sku = 'dup' WHERE id IN (1000, 1001)")
    with dbs.sink() as conn:
        products.create_products(conn, 0, table="exports")
        conn.execute("ALTER TABLE exports ADD CONSTRAINT exports_sku UNIQUE (sku)")


def sink_ids(dbs: FlowDatabases) -> list[int]:
    return [row[0] for row in dbs.sink_rows()]


@pytest.mark.parametrize("connections", ["2", "1"])
def test_a_key_shared_by_consecutive_batches_fails_the_later_batch(
    dbs: FlowDatabases, monkeypatch: pytest.MonkeyPatch, connections: str
) -> None:
    """Declarative rows (raw COPY): batch 0 commits, batch 1 is refused, as on one connection."""
    monkeypatch.setenv(SINK_CONNECTIONS_ENV, connections)
    sku_unique_sink(dbs)
    path = dbs.write("shared-key", source=SOURCE, sink={"table": "exports", "mode": "append"},
                     transform=[{"set": {"name": "x"}}])  # fmt: skip

    result = dbs.run(path)

    assert result.returncode == DATA, result.output
    assert "exports_sku" in result.summary["error"]
    assert sink_ids(dbs) == list(range(1, 1001))
    assert '"tieBreaker": 1000' in (dbs.watermark("shared-key") or "")


def test_a_key_shared_by_consecutive_batches_is_skipped_under_on_error_skip(
    dbs: FlowDatabases, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SINK_CONNECTIONS_ENV, "2")
    sku_unique_sink(dbs, rows=3000)
    path = dbs.write("shared-key-skip", source=SOURCE, onError="skip",
                     sink={"table": "exports", "mode": "append"})  # fmt: skip

    result = dbs.run(path)

    assert result.returncode == 0, result.output
    assert (result.summary["rowsWritten"], result.summary["rowsFailed"]) == (2999, 1)
    assert sink_ids(dbs) == [i for i in range(1, 3001) if i != 1001]


def test_upserts_of_one_key_in_consecutive_batches_keep_the_later_row(
    dbs: FlowDatabases, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SINK_CONNECTIONS_ENV, "2")
    sku_unique_sink(dbs, rows=4000)
    path = dbs.write("shared-key-upsert", source=SOURCE,
                     sink={"table": "exports", "mode": "upsert", "keys": ["sku"]})  # fmt: skip

    result = dbs.run(path)

    assert result.returncode == 0, result.output
    with dbs.sink() as conn:
        kept = conn.execute("SELECT id FROM exports WHERE sku = 'dup'").fetchall()
        assert conn.execute("SELECT count(*) FROM exports").fetchone() == (3999,)
    assert kept == [(1001,)]


def written_after_the_batch_before(
    dbs: FlowDatabases, write: Any, first_batch: Batch, later_batch: Batch
) -> dict[str, Any]:
    """Batch 1 is written first and holds its transaction open until batch 0 has committed.

    ``write(sink, batch, in_turn)`` writes one batch; batch 0 waits on a lock batch 1 holds, so
    batch 1 must back off (WriteConflict, as the runner then writes it again). Returns what
    batch 1's first attempt raised.
    """
    spec = SqlSinkSpec.model_validate({"url": {"value": dbs.sink_url}, "table": "t"})
    turns = _Turns()
    outcome: dict[str, Any] = {}
    with SqlSink(spec) as first, SqlSink(spec) as second:
        waiting = threading.Event()

        def in_turn() -> None:
            waiting.set()
            _in_turn(turns, 1, second, first)

        def write_later() -> None:
            try:
                write(second, later_batch, in_turn)
            except WriteConflict as exc:
                outcome["conflict"] = exc

        later = threading.Thread(target=write_later)
        later.start()
        assert waiting.wait(timeout=30)  # batch 1's transaction holds its locks
        write(first, first_batch, None)  # waits until batch 1 backs off
        turns.committed(0)
        later.join(timeout=30)
        assert not later.is_alive()
        write(second, later_batch, None)  # the runner's second attempt
    return outcome


def test_a_batch_holding_a_lock_the_batch_before_awaits_backs_off(dbs: FlowDatabases) -> None:
    """Batch 1 inserts key 'k' first, then batch 0 waits on that row: batch 1 rolls back instead
    of waiting for batch 0 for ever, and its second attempt meets batch 0's committed row."""
    with dbs.sink() as conn:
        conn.execute("CREATE TABLE t (k text PRIMARY KEY, batch int NOT NULL)")

    def write(sink: SqlSink, batch: Batch, in_turn: Any) -> None:
        try:
            sink.write(batch, Checkpoint("f", batch.watermark), None, in_turn)
        except DataError as exc:  # batch 1's second attempt: the key is taken by batch 0
            assert "t_pkey" in str(exc)

    def batch(number: int) -> Batch:
        return Batch(("k", "batch"), [("k", number)], "test", Watermark(number))

    outcome = written_after_the_batch_before(dbs, write, batch(0), batch(1))

    assert isinstance(outcome.get("conflict"), WriteConflict)
    with dbs.sink() as conn:
        assert conn.execute("SELECT k, batch FROM t").fetchall() == [("k", 0)]


def test_dead_letters_of_a_batch_written_twice_are_kept_once(dbs: FlowDatabases) -> None:
    """Batch 1 creates the dead-letter table first (under a lock that batch 0 then awaits) and
    backs off: its second attempt creates nothing twice and writes each dead letter once."""
    with dbs.sink() as conn:
        conn.execute("CREATE TABLE t (k int PRIMARY KEY, v int NOT NULL CHECK (v >= 0))")
    letters = {n: DeadLetters("refused", "f", [], None) for n in (0, 1)}

    def write(sink: SqlSink, batch: Batch, in_turn: Any) -> None:
        number = batch.watermark.cursor if batch.watermark else 0
        sink.write_isolated(batch, Checkpoint("f", batch.watermark), letters[number], in_turn)

    def batch(number: int, rows: list[tuple[int, int]]) -> Batch:
        return Batch(("k", "v"), rows, "test", Watermark(number), ("k",))

    outcome = written_after_the_batch_before(
        dbs, write, batch(0, [(1, -5)]), batch(1, [(2, -1), (3, 1)])
    )

    assert isinstance(outcome.get("conflict"), WriteConflict)
    with dbs.sink() as conn:
        assert conn.execute("SELECT k, v FROM t").fetchall() == [(3, 1)]
        refused = conn.execute("SELECT row FROM refused ORDER BY id").fetchall()
    assert [json.loads(r[0])["k"] for r in refused] == [1, 2]


def test_a_sink_connection_count_that_is_not_a_number_exits_3(
    dbs: FlowDatabases, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SINK_CONNECTIONS_ENV, "two")
    with dbs.source() as conn:
        products.create_products(conn, 10)
    with dbs.sink() as conn:
        products.create_products(conn, 0, table="exports")
    path = dbs.write("bad-count", source=SOURCE, sink={"table": "exports", "mode": "append"})

    result = dbs.run(path)

    assert result.returncode == INVALID, result.output
    assert SINK_CONNECTIONS_ENV in result.summary["error"]


@pytest.mark.parametrize(
    ("mode", "steps_bound", "second"),
    [("append", False, True), ("append", True, False), ("upsert", True, True),
     ("replace", False, False)],
)  # fmt: skip
def test_a_second_connection_where_the_sink_sets_the_pace(
    dbs: FlowDatabases, mode: str, steps_bound: bool, second: bool
) -> None:
    """An append whose Python steps set the pace keeps one connection; an upsert takes two."""
    with dbs.sink() as conn:
        products.create_products(conn, 0, table="exports")
    keys = {"keys": ["id"]} if mode == "upsert" else {}
    spec = SqlSinkSpec.model_validate(
        {"url": {"value": dbs.sink_url}, "table": "exports", "mode": mode, **keys}
    )
    with SqlSink(spec) as sink:
        spare = sink.spare(steps_bound=steps_bound)
        assert (spare is not None) == second
        if spare is not None:
            with spare:
                spare.write(Batch(products.COLUMNS, [], "test"), None)
