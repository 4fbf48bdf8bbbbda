"""A source and a sink database on the test server, and running flows between them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from tests.support import adf, products
from tests.support.postgres import PostgresServer


@dataclass
class FlowDatabases:
    """A source and a sink database of one test, plus what it takes to run flows between them."""

    server: PostgresServer
    source_url: str
    sink_url: str
    tmp_path: Path

    @property
    def env(self) -> dict[str, str]:
        return adf.flow_env(self.source_url, self.sink_url, self.tmp_path / "termination-log")

    def source(self) -> psycopg.Connection[Any]:
        return self.server.connect(self.source_url.rsplit("/", 1)[1])

    def sink(self) -> psycopg.Connection[Any]:
        return self.server.connect(self.sink_url.rsplit("/", 1)[1])

    def source_rows(self) -> list[tuple[Any, ...]]:
        with self.source() as conn:
            return products.fetch_rows(conn, "products")

    def sink_rows(self, table: str = "exports") -> list[tuple[Any, ...]]:
        with self.sink() as conn:
            return products.fetch_rows(conn, table)

    def watermark(self, flow: str) -> str | None:
        """The committed watermark (JSON text) of `flow`, None before its first checkpoint."""
        with self.sink() as conn:
            if conn.execute("SELECT to_regclass('adf_state')").fetchone() == (None,):
                return None
            row = conn.execute(
                "SELECT watermark FROM adf_state WHERE flow_id = %s", (f"tests/{flow}",)
            ).fetchone()
            return None if row is None else str(row[0])

    def write(self, name: str, **kwargs: Any) -> Path:
        """Write the manifest of flow `name` (see tests.support.adf.manifest) to a file."""
        return adf.write_manifest(self.tmp_path / f"{name}.yaml", adf.manifest(name, **kwargs))

    def run(self, path: Path, *args: str) -> adf.AdfResult:
        """Run a flow to its end; whatever happened, the server's password must not show."""
        result = adf.run_flow(path, self.env, *args)
        termination_log = self.tmp_path / "termination-log"
        written = termination_log.read_text() if termination_log.exists() else ""
        if self.server.password:
            assert self.server.password not in result.output + written
        return result
