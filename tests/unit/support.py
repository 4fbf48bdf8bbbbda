"""Helpers of the engine tests: SQLite products databases, manifests, `adf` as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, insert, text

from adf_core.demo import products_table

BASE_TIME = datetime(2024, 1, 1)


def product(i: int, *, minute: int | None = None, price: float | None = None) -> dict[str, Any]:
    """One products row; ``minute`` sets updated_at (several rows may share it: cursor ties)."""
    return {
        "id": i,
        "name": f"thing {i}",
        "sku": f"sku-{i:05d}",
        "price": round(1 + i * 0.5, 2) if price is None else price,
        "category": ["books", "toys", "tools"][i % 3],
        "active": i % 5 != 0,
        "updated_at": BASE_TIME + timedelta(minutes=i if minute is None else minute),
    }


@dataclass
class SqliteDb:
    path: Path

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        engine = create_engine(self.url)
        with engine.begin() as conn:
            conn.execute(text(sql), params or {})
        engine.dispose()

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        engine = create_engine(self.url)
        with engine.connect() as conn:
            result = [tuple(r) for r in conn.execute(text(sql), params or {})]
        engine.dispose()
        return result

    def scalar(self, sql: str) -> Any:
        return self.rows(sql)[0][0]

    def tables(self) -> list[str]:
        return [r[0] for r in self.rows("SELECT name FROM sqlite_master WHERE type = 'table'")]

    def add_products(self, rows: Sequence[dict[str, Any]]) -> None:
        engine = create_engine(self.url)
        table = products_table(MetaData())
        with engine.begin() as conn:
            table.create(conn, checkfirst=True)
            if rows:
                conn.execute(insert(table), list(rows))
        engine.dispose()


def flow_manifest(
    source: dict[str, Any],
    sink: dict[str, Any],
    *,
    name: str = "product-sync",
    namespace: str = "shop",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "activedataflow.io/v1alpha1",
        "kind": "DataFlow",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"source": {"sql": source}, "sink": {"sql": sink}, **spec},
    }


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    summary: dict[str, Any]


def adf_executable() -> str:
    return str(Path(sys.executable).with_name("adf"))


def spawn_adf(
    manifest: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`adf run -f manifest --output json` as a real process (for SIGKILL tests)."""
    return subprocess.Popen(
        [adf_executable(), "run", "-f", str(manifest), "--output", "json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
