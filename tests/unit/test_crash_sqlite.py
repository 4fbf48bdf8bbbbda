"""Crash safety on SQLite: SIGKILL `adf run` mid-run, run again, compare the sink row by row.

Append mode is the strict case: a batch written without its watermark would be appended twice.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.unit.support import SqliteDb, flow_manifest, product, spawn_adf

ROWS = 1500


def watermark_id(db: SqliteDb) -> int:
    """The tie-breaker of the committed watermark, 0 before the first checkpoint."""
    if not db.path.exists() or "adf_state" not in db.tables():
        return 0
    stored = db.rows("SELECT watermark FROM adf_state")
    return int(json.loads(stored[0][0])["tieBreaker"]) if stored else 0


def wait_for_progress(
    db: SqliteDb, proc: subprocess.Popen[str], beyond: int, timeout: float = 60
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"adf ended before the kill: {proc.communicate()}")
        seen = watermark_id(db)
        if seen > beyond:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint beyond id {beyond} within {timeout}s")


def test_sigkill_mid_run_loses_and_duplicates_nothing(
    tmp_path: Path,
    write_manifest: Callable[[dict[str, Any]], Path],
    processes: list[subprocess.Popen[str]],
) -> None:
    source, sink = SqliteDb(tmp_path / "shop.db"), SqliteDb(tmp_path / "warehouse.db")
    source.add_products([product(i, minute=i // 4) for i in range(1, ROWS + 1)])  # cursor ties
    (tmp_path / "slow_flow.py").write_text(
        "import time\n\ndef f(row):\n    time.sleep(0.0015)\n    return row\n"
    )
    manifest = write_manifest(
        flow_manifest(
            {
                "url": {"value": source.url},
                "table": "products",
                "cursor": {"column": "updated_at", "tieBreaker": "id"},
                "batchSize": 45,
            },
            {"url": {"value": sink.url}, "table": "exports", "mode": "append"},
            transform=[{"python": {"callable": "slow_flow:f", "path": str(tmp_path)}}],
        )
    )
    rng = random.Random(20240101)
    env = {"ADF_TERMINATION_LOG": str(tmp_path / "termination-log")}
    progress = 0
    for _ in range(3):
        proc = spawn_adf(manifest, env=env)
        processes.append(proc)
        progress = wait_for_progress(sink, proc, progress + rng.randrange(1, 200))
        time.sleep(rng.uniform(0, 0.05))  # land the kill anywhere inside the next batch
        proc.kill()
        assert proc.wait(timeout=30) == -9

    killed_at = watermark_id(sink)
    assert 0 < killed_at < ROWS
    final = spawn_adf(manifest, env=env)
    processes.append(final)
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])

    assert summary["rowsRead"] == ROWS - killed_at
    assert sink.rows("SELECT * FROM exports ORDER BY id") == source.rows(
        "SELECT * FROM products ORDER BY id"
    )
    assert sink.scalar("SELECT count(*) FROM exports") == ROWS
    assert watermark_id(sink) == ROWS
