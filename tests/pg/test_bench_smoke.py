"""`python -m bench` end to end on a few rows: every path moves every row in every round (timing
is not judged)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.suite import MEASUREMENTS
from tests.support.postgres import EXTERNAL_URL_ENV, PostgresServer

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
ROWS = 5000


def test_bench_moves_every_row_on_every_path(postgres: PostgresServer, tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    env = {EXTERNAL_URL_ENV: postgres.url(postgres.admin_database, driver="postgresql")}
    command = [sys.executable, "-m", "bench", "--rows", str(ROWS), "--repeat", "2"]
    done = subprocess.run(
        [*command, "--json", str(report)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(report.read_text())
    assert result["errors"] == {}
    assert set(result["measurements"]) == set(MEASUREMENTS)
    for name, measurement in result["measurements"].items():
        assert measurement["rowsInSink"] == measurement["rows"] == ROWS, name
        assert len(measurement["runs"]) == 2, name  # one run per round
        assert measurement["seconds"] == min(measurement["runs"]), name
    assert {figure["status"] for figure in result["figures"]} <= {"PASS", "MISS"}
