"""A throwaway PostgreSQL server for the tests and the benchmark.

The tests and `make bench` need a real server, not a mock, and must not depend on one being set up
by hand: this module finds the binaries of Debian's `postgresql` package (or any on PATH), runs
`initdb` into a temporary directory, starts the server on a free loopback port and stops it again
(the caller's `stop()`, and an atexit hook as a safety net). PostgreSQL refuses to run as root, so
as root the server runs as the unprivileged `postgres` user (created as `adf-pg` when missing).

Set ADF_TEST_POSTGRES_URL (e.g. ``postgresql://user:pw@127.0.0.1:5432/postgres``) to use an
existing server instead; databases are then created and dropped on it.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

EXTERNAL_URL_ENV = "ADF_TEST_POSTGRES_URL"
SERVICE_USER = "adf-pg"
START_ATTEMPTS = 3
# Crash safety is the engine's job, not the test server's: tests may skip fsync, the bench may not.
FAST_SETTINGS = {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries are installed and no external server is configured."""


def find_binary(name: str) -> Path | None:
    """The newest installed PostgreSQL program `name`: PATH first, then Debian's layout."""
    found = shutil.which(name)
    if found:
        return Path(found)
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    candidates.sort(key=lambda p: int(re.sub(r"\D", "", Path(p).parts[3]) or 0), reverse=True)
    return Path(candidates[0]) if candidates else None


def free_port() -> int:
    """A TCP port that nothing listens on at the moment (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """Connection facts of a running server; knows how to create and drop databases on it."""

    host: str
    port: int
    user: str
    password: str
    admin_database: str = "postgres"

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        """SQLAlchemy URL of `database` (with the password: keep it out of logs)."""
        return URL.create(
            driver,
            username=self.user,
            password=self.password,
            host=self.host,
            port=self.port,
            database=database,
        ).render_as_string(hide_password=False)

    def libpq_env(self, database: str) -> dict[str, str]:
        """Environment for psql & co, so that no password appears on a command line."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": database,
        }

    def connect(self, database: str | None = None) -> psycopg.Connection[tuple[Any, ...]]:
        """An autocommit psycopg connection, for set-up and for checking results."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.admin_database,
            autocommit=True,
        )

    def create_database(self, name: str) -> str:
        """Create (or re-create) an empty database and return its SQLAlchemy URL."""
        self.drop_database(name)
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending any session still connected to it (a killed engine's)."""
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def stop(self) -> None:
        """Nothing to stop for a server this process did not start."""


@dataclass
class LocalPostgres(PostgresServer):
    """A server this process started with initdb/pg_ctl in a temporary directory."""

    base_dir: Path = field(default_factory=Path)
    pg_ctl: Path = field(default_factory=Path)
    run_as: pwd.struct_passwd | None = None
    _running: bool = False

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "server.log"

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server log, for error messages."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def start(self, settings: dict[str, str]) -> None:
        """Start the server on a free loopback port, retrying if another process took the port."""
        for _attempt in range(START_ATTEMPTS):
            self.port = free_port()
            options = [
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.base_dir}",
                *(f"-c {key}={value}" for key, value in settings.items()),
            ]
            args = ["start", "-w", "-t", "60", "-D", str(self.data_dir), "-l", str(self.log_file)]
            result = self._run(self.pg_ctl, *args, "-o", " ".join(options), check=False)
            if result.returncode == 0:
                self._running = True
                return
            if "could not bind" not in self.log_tail():
                break
        raise RuntimeError(f"PostgreSQL did not start:\n{result.stdout}\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory; safe to call twice."""
        if self._running:
            self._running = False
            self._run(
                self.pg_ctl, "stop", "-m", "fast", "-w", "-D", str(self.data_dir), check=False
            )
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def _run(
        self, program: Path, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program as the service user, with a clean libpq environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        user = self.run_as
        return subprocess.run(
            [str(program), *args],
            cwd=self.base_dir,
            env=env,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=check,
            timeout=120,
        )


def service_user() -> pwd.struct_passwd | None:
    """The unprivileged account that runs the server when we are root (None otherwise)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", SERVICE_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(SERVICE_USER)


def start_local(*, durable: bool) -> LocalPostgres:
    """initdb + start a private server; `durable=False` turns fsync off (tests only)."""
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise PostgresUnavailable(
            "initdb and pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin;"
            f" install Debian's postgresql package or set {EXTERNAL_URL_ENV}"
        )
    user = service_user()
    base_dir = Path(tempfile.mkdtemp(prefix="adf-pg-"))
    server = LocalPostgres(
        host="127.0.0.1",
        port=0,
        user="adf",
        password=secrets.token_urlsafe(16),
        base_dir=base_dir,
        pg_ctl=pg_ctl,
        run_as=user,
    )
    atexit.register(server.stop)
    try:
        password_file = base_dir / "password"
        password_file.write_text(server.password)
        if user is not None:
            for path in (base_dir, password_file):
                os.chown(path, user.pw_uid, user.pw_gid)
        server._run(
            initdb,
            "-D", str(server.data_dir),
            "-U", server.user,
            f"--pwfile={password_file}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )  # fmt: skip
        password_file.unlink()
        server.start({} if durable else FAST_SETTINGS)
    except BaseException:
        server.stop()
        raise
    return server


def external_server(url: str) -> PostgresServer:
    """The server named by ADF_TEST_POSTGRES_URL."""
    parsed = make_url(url)
    return PostgresServer(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password or "",
        admin_database=parsed.database or "postgres",
    )


def acquire(*, durable: bool) -> PostgresServer:
    """The configured external server, else a freshly started private one."""
    url = os.environ.get(EXTERNAL_URL_ENV)
    return external_server(url) if url else start_local(durable=durable)


def acquire_for_test(*, durable: bool = False) -> PostgresServer:
    """acquire() for a pytest fixture: without PostgreSQL the test is skipped on a developer
    machine but fails under CI=true, because CI must never pass by silently testing nothing."""
    import pytest

    try:
        return acquire(durable=durable)
    except PostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(str(exc))
