"""Fixtures of the PostgreSQL tests: one real server per session, fresh databases per test.

The server is started by tests/support/postgres.py (or taken from ADF_TEST_POSTGRES_URL). Without
PostgreSQL these tests are skipped on a developer machine, but fail under CI=true: CI must never
pass by silently testing nothing.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# A bare `pytest` does not put the repository root on sys.path (tests/ is not a package).
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.support.pgflows import FlowDatabases  # noqa: E402
from tests.support.postgres import PostgresServer, PostgresUnavailable, acquire  # noqa: E402


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (fsync off: the engine's crash safety is what we test)."""
    try:
        server = acquire(durable=False)
    except PostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(str(exc))
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


@pytest.fixture
def dbs(
    postgres: PostgresServer, new_database: Callable[[str], str], tmp_path: Path
) -> FlowDatabases:
    return FlowDatabases(postgres, new_database("src"), new_database("sink"), tmp_path)
