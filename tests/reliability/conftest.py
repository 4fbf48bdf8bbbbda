"""Fixtures of the reliability suite: the dev control plane, a PostgreSQL server of its own (the
scenarios restart and stop it), the operator as a killable process, and the trial recorder.

The short form runs in `make test`; ADF_SOAK=1 (what `python -m soak` sets) runs the long form.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# A bare `pytest` does not put the repository root on sys.path (tests/ is not a package).
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from devcluster.controlplane import ControlPlane  # noqa: E402
from devcluster.pytest_plugin import (  # noqa: E402
    Kubectl,
    control_plane,
    kubectl,
    namespace,
    pod_output,
    wait_for_fixture,
)
from soak.report import Recorder, summarize, table  # noqa: E402
from tests.reliability.harness import Databases, OperatorProcess  # noqa: E402
from tests.support.postgres import (  # noqa: E402
    EXTERNAL_URL_ENV,
    LocalPostgres,
    acquire_for_test,
)

# Re-exported rather than listed in pytest_plugins, which pytest only honours in the rootdir's
# conftest.
__all__ = ["control_plane", "kubectl", "namespace", "pod_output", "wait_for_fixture"]


RECORDER = Recorder()


@pytest.fixture(scope="session")
def report() -> Recorder:
    """Where the scenarios record their trials (a JSON-lines file under `python -m soak`)."""
    return RECORDER


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The scenarios' numbers after the test results: trials, rows, lost, duplicated, stuck."""
    if RECORDER.trials:
        terminalreporter.write_sep("-", "reliability trials")
        terminalreporter.write_line(table(summarize(RECORDER.trials)))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[LocalPostgres]:
    """A PostgreSQL server for this suite alone: scenarios restart and stop it."""
    server = acquire_for_test()
    if not isinstance(server, LocalPostgres):
        server.stop()
        pytest.skip(f"the fault scenarios restart the server: a local one, not {EXTERNAL_URL_ENV}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def new_database(pg_server: LocalPostgres) -> Iterator[Callable[[str], str]]:
    """Factory of empty databases, dropped after the test; returns the database name."""
    created: list[str] = []

    def create(label: str) -> str:
        name = f"rel_{label}_{uuid.uuid4().hex[:8]}"
        pg_server.create_database(name)
        created.append(name)
        return name

    yield create
    for name in created:
        pg_server.drop_database(name)


@pytest.fixture
def dbs(
    pg_server: LocalPostgres, new_database: Callable[[str], str], kubectl: Kubectl, namespace: str
) -> Databases:
    """A source and a sink database, with their URLs in the Secrets the flows name."""
    databases = Databases(
        pg_server, new_database("src"), pg_server, new_database("sink"), namespace
    )
    databases.create_secrets(kubectl)
    return databases


@pytest.fixture
def operator(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """`python -m adf_operator` for the test's namespace, as a process the test may kill."""
    process = OperatorProcess(namespace, tmp_path / "operator.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()
