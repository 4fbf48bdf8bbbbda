"""Chart tests against the real dev control plane (devcluster/) and a real PostgreSQL server."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator

import pytest

# A bare `pytest` does not put the repository root on sys.path (tests/ is not a package).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from devcluster.pytest_plugin import (  # noqa: E402
    control_plane,
    kubectl,
    namespace,
    pod_output,
    wait_for_fixture,
)
from tests.support.postgres import PostgresServer, PostgresUnavailable, acquire  # noqa: E402

# Re-exported rather than listed in pytest_plugins, which pytest only honours in the rootdir's
# conftest.
__all__ = ["control_plane", "kubectl", "namespace", "pod_output", "wait_for_fixture"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session; required in CI, skipped without binaries elsewhere."""
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
    """Factory of empty databases, dropped after the test; returns the SQLAlchemy URL."""
    created: list[str] = []

    def create(label: str) -> str:
        name = f"t_{label}_{uuid.uuid4().hex[:8]}"
        created.append(name)
        return postgres.create_database(name)

    yield create
    for name in created:
        postgres.drop_database(name)
