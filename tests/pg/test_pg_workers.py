"""Python steps in worker processes (adf_core.workers), PostgreSQL to PostgreSQL.

An incremental flow with a tie-breaker reads raw COPY text, which forked workers parse, transform
and format again; the run's process commits each batch with its watermark in order. These tests
pin what must not change with that path: the rows, the onError policies (for rows that a step
refuses and rows that the sink refuses), a worker that dies, and a SIGKILL of the run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import adf, products
from tests.support.pgflows import FlowDatabases

pytestmark = pytest.mark.postgres

STEPS_DIR = str(Path(__file__).with_name("flows"))
ROWS = 1000
FAIL_ID = 600  # tests/pg/flows/worker_steps.py
SOURCE = {"table": "products", "cursor": {"column": "updated_at", "tieBreaker": "id"},
          "batchSize": 250}  # fmt: skip


def step(name: str) -> dict[str, Any]:
    return {"python": {"callable": f"worker_steps:{name}", "path": STEPS_DIR}}


def on_error(policy: str) -> dict[str, Any]:
    letters = {"deadLetter": {"table": "refused"}} if policy == "deadLetter" else {}
    return {"onError": policy, **letters}


@pytest.fixture
def filled(dbs: FlowDatabases) -> FlowDatabases:
    with dbs.source() as conn:
        products.create_products(conn, ROWS)
    with dbs.sink() as conn:
        products.create_products(conn, 0, table="exports")
    return dbs


def run(dbs: FlowDatabases, path: Path, workers: str = "2") -> tuple[adf.AdfResult, int]:
    """Run a flow with ADF_STEP_WORKERS set; returns its result and the run's process id."""
    process = adf.start_flow(path, {**dbs.env, "ADF_STEP_WORKERS": workers})
    out, err = process.communicate(timeout=120)
    result = adf.AdfResult(process.returncode, out, err)
    if dbs.server.password:
        assert dbs.server.password not in result.output
    return result, process.pid


def tagged(dbs: FlowDatabases) -> list[tuple[Any, ...]]:
    """The source rows as tag_pid writes them, without the process tag."""
    return [(r[0], r[1], r[2].upper(), r[3], r[5], r[6]) for r in dbs.source_rows()]


def untagged(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [(r[0], r[1], r[2], r[3], r[5], r[6]) for r in rows]


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_workers_write_every_row_once(filled: FlowDatabases, mode: str) -> None:
    dbs = filled
    sink = {"table": "exports", "mode": mode, **({"keys": ["id"]} if mode == "upsert" else {})}
    path = dbs.write("tagged", source=SOURCE, sink=sink, transform=[step("tag_pid")])

    result, pid = run(dbs, path)

    assert result.returncode == 0, result.output
    assert (result.summary["rowsRead"], result.summary["rowsWritten"]) == (ROWS, ROWS)
    rows = dbs.sink_rows()
    assert untagged(rows) == tagged(dbs)
    processes = {r[4] for r in rows}
    assert len(processes) == 2 and f"pid-{pid}" not in processes  # two workers did the steps
    assert dbs.watermark("tagged") is not None
    again, _ = run(dbs, path)
    assert (again.returncode, again.summary["rowsRead"]) == (0, 0)  # the watermark holds


@pytest.mark.parametrize("workers", ["2", "0"])
def test_upsert_keeps_the_last_of_rows_sharing_a_key(filled: FlowDatabases, workers: str) -> None:
    dbs = filled
    sink = {"table": "exports", "mode": "upsert", "keys": ["id"]}
    path = dbs.write("twice", source=SOURCE, sink=sink, transform=[step("twice")])

    result, _ = run(dbs, path, workers)

    assert result.returncode == 0, result.output
    assert result.summary["rowsWritten"] == 2 * ROWS  # counted alike with and without workers
    assert dbs.sink_rows() == adf.exported(dbs.source_rows())


def test_upsert_keeps_the_last_row_of_a_key_in_two_parts_of_a_workers_batch(
    filled: FlowDatabases,
) -> None:
    """A worker takes a batch ~256 KB at a time: 8,000 rows are two parts, each holding every
    folded key; the sink keeps the last row of each."""
    dbs = filled
    with dbs.source() as conn:
        products.add_products(conn, ROWS + 1, 8 * ROWS)
    sink = {"table": "exports", "mode": "upsert", "keys": ["id"]}
    source = {**SOURCE, "batchSize": 8 * ROWS}  # one batch: rows come in id order
    path = dbs.write("folded", source=source, sink=sink, transform=[step("fold_keys")])

    result, _ = run(dbs, path)

    assert result.returncode == 0, result.output
    assert (result.summary["rowsRead"], result.summary["rowsWritten"]) == (8 * ROWS, 8 * ROWS)
    last = adf.exported(dbs.source_rows())[-ROWS:]  # ids 7,001-8,000: the last of each key
    assert dbs.sink_rows() == [(r[0] - 7 * ROWS, *r[1:]) for r in last]


@pytest.mark.parametrize("workers", ["2", "0"])
def test_rows_a_step_drops_are_counted_as_skipped(filled: FlowDatabases, workers: str) -> None:
    dbs = filled
    path = dbs.write("drops", source=SOURCE, sink={"table": "exports"},
                     transform=[step("drop_odd")])  # fmt: skip

    result, _ = run(dbs, path, workers)

    assert result.returncode == 0, result.output
    kept = [r for r in adf.exported(dbs.source_rows()) if r[0] % 2 == 0]
    assert dbs.sink_rows() == kept
    summary = result.summary
    assert (summary["rowsRead"], summary["rowsWritten"]) == (ROWS, len(kept))
    assert summary["rowsSkipped"] == ROWS - len(kept)


def test_without_workers_the_run_transforms_in_process(filled: FlowDatabases) -> None:
    dbs = filled
    path = dbs.write("local", source=SOURCE, sink={"table": "exports"},
                     transform=[step("tag_pid")])  # fmt: skip

    result, pid = run(dbs, path, workers="0")

    assert result.returncode == 0, result.output
    rows = dbs.sink_rows()
    assert untagged(rows) == tagged(dbs)
    assert {r[4] for r in rows} == {f"pid-{pid}"}


def test_a_refused_row_fails_the_run_after_the_committed_batches(filled: FlowDatabases) -> None:
    dbs = filled
    path = dbs.write("fails", source=SOURCE, sink={"table": "exports"},
                     transform=[step("refuse_one")])  # fmt: skip

    result, _ = run(dbs, path)

    assert result.returncode == 5, result.output
    assert f"id={FAIL_ID}" in result.summary["error"]
    assert "refused product 600" in result.summary["error"]
    assert dbs.sink_rows() == adf.exported(dbs.source_rows())[:500]  # batches 1 and 2 only


@pytest.mark.parametrize("policy", ["skip", "deadLetter"])
def test_a_refused_row_is_set_aside_under_skip_and_dead_letter(
    filled: FlowDatabases, policy: str
) -> None:
    dbs = filled
    path = dbs.write("aside", source=SOURCE, sink={"table": "exports"},
                     transform=[step("refuse_one")], **on_error(policy))  # fmt: skip

    result, _ = run(dbs, path)

    assert result.returncode == 0, result.output
    assert (result.summary["rowsFailed"], result.summary["rowsWritten"]) == (1, ROWS - 1)
    expected = [r for r in adf.exported(dbs.source_rows()) if r[0] != FAIL_ID]
    assert dbs.sink_rows() == expected
    if policy == "deadLetter":
        with dbs.sink() as conn:
            letters = conn.execute("SELECT row, error FROM refused").fetchall()
        assert len(letters) == 1
        assert '"id": 600' in letters[0][0] and "refused product 600" in letters[0][1]


@pytest.mark.parametrize("policy", ["fail", "skip", "deadLetter"])
@pytest.mark.parametrize("copy", ["binary", "text"])
def test_rows_the_sink_refuses_under_each_policy(
    filled: FlowDatabases, policy: str, copy: str
) -> None:
    """Workers send binary COPY when every value fits its column's type exactly, else text."""
    dbs = filled
    with dbs.sink() as conn:  # the sink, not a step, refuses every hundredth product
        conn.execute("ALTER TABLE exports ADD CONSTRAINT no_hundreds CHECK (id % 100 <> 0)")
    transform = step("float_price") if copy == "text" else adf.EXPORT_STEP
    path = dbs.write("sink-refuses", source=SOURCE, sink={"table": "exports"},
                     transform=[transform], **on_error(policy))  # fmt: skip

    result, _ = run(dbs, path)

    exported = adf.exported(dbs.source_rows())
    if policy == "fail":
        assert result.returncode == 5, result.output
        assert "no_hundreds" in result.summary["error"]
        assert dbs.sink_rows() == []  # the first batch already holds id 100
        return
    assert result.returncode == 0, result.output
    assert (result.summary["rowsFailed"], result.summary["rowsWritten"]) == (10, ROWS - 10)
    assert dbs.sink_rows() == [r for r in exported if r[0] % 100 != 0]
    if policy == "deadLetter":
        with dbs.sink() as conn:
            letters = conn.execute("SELECT row, error FROM refused ORDER BY id").fetchall()
        assert len(letters) == 10
        # read back with the sink's column types, whichever COPY format carried them
        assert '"id": 100,' in letters[0][0] and "no_hundreds" in letters[0][1]
        assert '"sku": "SKU-00000100"' in letters[0][0]


@pytest.mark.parametrize("workers", ["2", "0"])
def test_upsert_skips_rows_the_sink_refuses(filled: FlowDatabases, workers: str) -> None:
    """A refused batch rolls back; the staging table, created once per run, outlives that."""
    dbs = filled
    with dbs.sink() as conn:
        conn.execute(f"ALTER TABLE exports ADD CONSTRAINT not_one CHECK (id <> {FAIL_ID})")
    sink = {"table": "exports", "mode": "upsert", "keys": ["id"]}
    path = dbs.write("upsert-refused", source=SOURCE, sink=sink, transform=[adf.EXPORT_STEP],
                     onError="skip")  # fmt: skip

    result, _ = run(dbs, path, workers)

    assert result.returncode == 0, result.output
    assert (result.summary["rowsFailed"], result.summary["rowsWritten"]) == (1, ROWS - 1)
    assert dbs.sink_rows() == [r for r in adf.exported(dbs.source_rows()) if r[0] != FAIL_ID]


TYPED = [{"name": "id", "type": "integer", "nullable": False}, {"name": "name", "type": "string"},
         {"name": "sku", "type": "string"}, {"name": "price", "type": "number"},
         {"name": "category", "type": "string"}, {"name": "active", "type": "boolean"},
         {"name": "updated_at", "type": "datetime"}]  # fmt: skip


def test_typed_rows_are_validated_in_the_workers(filled: FlowDatabases) -> None:
    dbs = filled
    path = dbs.write("typed", source=SOURCE, sink={"table": "exports"},
                     schema={"columns": TYPED})  # fmt: skip

    result, _ = run(dbs, path)

    assert result.returncode == 0, result.output
    assert dbs.sink_rows() == dbs.source_rows()

    wrong = [c if c["name"] != "sku" else {"name": "sku", "type": "integer"} for c in TYPED]
    mistyped = dbs.write("mistyped", source=SOURCE, sink={"table": "exports"},
                         schema={"columns": wrong})  # fmt: skip
    failed, _ = run(dbs, mistyped)

    assert failed.returncode == 5, failed.output
    error = failed.summary["error"]
    assert "row id=1: field 'sku': expected integer, got str" in error, error


def test_a_worker_that_dies_fails_the_run_cleanly(filled: FlowDatabases) -> None:
    dbs = filled
    path = dbs.write("dies", source=SOURCE, sink={"table": "exports"},
                     transform=[step("die_at_one")])  # fmt: skip

    result, _ = run(dbs, path)

    assert result.returncode == 1, result.output
    assert "worker process ended unexpectedly" in result.summary["error"]
    assert len(dbs.sink_rows()) in (0, 250, 500)  # whole batches before the one that died


def test_a_killed_run_leaves_no_worker_behind_and_resumes(filled: FlowDatabases) -> None:
    dbs = filled
    with dbs.source() as conn:
        products.add_products(conn, ROWS + 1, 20 * ROWS)
    path = dbs.write("killed", source=SOURCE, sink={"table": "exports"},
                     transform=[step("tag_pid")])  # fmt: skip
    process = adf.start_flow(path, {**dbs.env, "ADF_STEP_WORKERS": "2"})
    try:
        deadline = time.monotonic() + 60
        while dbs.watermark("killed") is None:
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.02)
    finally:
        process.kill()
        process.communicate(timeout=30)
    assert process.returncode == -9, "the run ended before it could be killed"
    workers = {int(r[4].removeprefix("pid-")) for r in dbs.sink_rows()}
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers):  # end-of-file on their pipes ends them
        assert time.monotonic() < deadline, "worker processes outlived their run"
        time.sleep(0.05)
    prefix = len(dbs.sink_rows())
    assert untagged(dbs.sink_rows()) == tagged(dbs)[:prefix]

    final, _ = run(dbs, path)

    assert final.returncode == 0, final.output
    assert final.summary["rowsRead"] == 20 * ROWS - prefix
    assert untagged(dbs.sink_rows()) == tagged(dbs)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead, whoever reaps it
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
