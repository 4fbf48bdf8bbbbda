"""The test server itself: loopback only, password required, databases isolated per test."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest

from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres


def test_server_listens_on_loopback_and_requires_a_password(postgres: PostgresServer) -> None:
    with postgres.connect() as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(
            host=postgres.host, port=postgres.port, user=postgres.user, password="wrong"
        ).close()


def test_each_database_starts_empty(
    postgres: PostgresServer, new_database: Callable[[str], str]
) -> None:
    first, second = new_database("a"), new_database("b")
    assert first != second
    with postgres.connect(first.rsplit("/", 1)[1]) as conn:
        conn.execute("CREATE TABLE t (id int)")
    with postgres.connect(second.rsplit("/", 1)[1]) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (0,)
