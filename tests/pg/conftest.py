"""Fixtures of the PostgreSQL tests: a source and a sink database per test, on the session's
server (the `postgres` and `new_database` fixtures of tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.pgflows import FlowDatabases
from tests.support.postgres import PostgresServer


@pytest.fixture
def dbs(
    postgres: PostgresServer, new_database: Callable[[str], str], tmp_path: Path
) -> FlowDatabases:
    return FlowDatabases(postgres, new_database("src"), new_database("sink"), tmp_path)
