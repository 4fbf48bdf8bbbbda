"""Shared test fixtures: SQLite databases, manifests, and running `adf` for real.

``run_adf`` runs the CLI in-process (fast); ``tests.unit.support.spawn_adf`` runs it as a
subprocess (crash tests). Every test gets its own ADF_TERMINATION_LOG, so nothing writes to
/dev/termination-log.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

# A bare `pytest` does not put the repository root on sys.path (tests/ is not a package).
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from adf_core.cli import app  # noqa: E402
from tests.support.postgres import PostgresServer, acquire_for_test  # noqa: E402
from tests.unit.support import Result, SqliteDb, product  # noqa: E402


@pytest.fixture
def source_db(tmp_path: Path) -> SqliteDb:
    db = SqliteDb(tmp_path / "shop.db")
    db.add_products([product(i) for i in range(1, 51)])
    return db


@pytest.fixture
def sink_db(tmp_path: Path) -> SqliteDb:
    return SqliteDb(tmp_path / "warehouse.db")


@pytest.fixture
def termination_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "termination-log"
    monkeypatch.setenv("ADF_TERMINATION_LOG", str(path))
    return path


@pytest.fixture
def write_manifest(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    counter = iter(range(1_000_000))

    def write(manifest: dict[str, Any]) -> Path:
        path = tmp_path / f"flow-{next(counter)}.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        return path

    return write


@pytest.fixture
def run_adf(termination_log: Path) -> Callable[..., Result]:
    """Run ``adf <args> --output json`` in-process and parse the summary line."""

    def run(*args: str, stdin: str | None = None, json_output: bool = True) -> Result:
        argv = list(args) + (["--output", "json"] if json_output and args[0] == "run" else [])
        result = CliRunner().invoke(app, argv, input=stdin, catch_exceptions=False)
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        summary = json.loads(lines[-1]) if lines else {}
        return Result(result.exit_code, result.stdout, result.stderr, summary)

    return run


@pytest.fixture
def run_flow(
    write_manifest: Callable[[dict[str, Any]], Path], run_adf: Callable[..., Result]
) -> Callable[..., Result]:
    """Write a manifest and run it; extra args go to `adf run`."""

    def run(manifest: dict[str, Any], *args: str) -> Result:
        return run_adf("run", "-f", str(write_manifest(manifest)), *args)

    return run


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; killed and reaped even when the test fails."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (fsync off: the engine's crash safety is what we test),
    started by tests/support/postgres.py or taken from ADF_TEST_POSTGRES_URL."""
    server = acquire_for_test()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def new_database(postgres: PostgresServer) -> Iterator[Callable[[str], str]]:
    """Factory of empty databases for one test, dropped afterwards; returns the SQLAlchemy URL."""
    created: list[str] = []

    def create(label: str) -> str:
        name = f"t_{label}_{uuid.uuid4().hex[:8]}"
        created.append(name)
        return postgres.create_database(name)

    yield create
    for name in created:
        postgres.drop_database(name)
