"""Run the engine as a run pod does (`adf run -f … --output json`) and measure time and memory."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import adf

ROOT = Path(__file__).resolve().parent.parent
CURSOR = {"column": "updated_at", "tieBreaker": "id"}
BATCH_SIZE = 10_000
PYTHON_STEP: dict[str, Any] = {
    "python": {"callable": "bench.transforms:to_export", "path": str(ROOT)}
}
DECLARATIVE_STEPS: list[dict[str, Any]] = [
    {"rename": {"id": "product_id"}},
    {"drop": ["active"]},
    {"set": {"origin": "shop"}},
]


@dataclass
class EngineRun:
    seconds: float
    peak_rss_bytes: int
    summary: dict[str, Any]


def flow(
    name: str, table: str, sink: dict[str, Any], transform: list[dict[str, Any]]
) -> dict[str, Any]:
    """An incremental flow (checkpoint per batch, as a scheduled run does) from products."""
    return adf.manifest(
        name,
        source={"table": "products", "cursor": CURSOR, "batchSize": BATCH_SIZE},
        sink={"table": table, "createTable": False, **sink},
        transform=transform,
    )


def run_engine(
    document: dict[str, Any], env: dict[str, str], workdir: Path, profile: Path | None
) -> EngineRun:
    """Run one flow in a child process; its peak RSS comes from the kernel (wait4), not polling."""
    path = adf.write_manifest(workdir / f"{document['metadata']['name']}.yaml", document)
    argv = adf.run_command(path)
    if profile is not None:
        argv = [sys.executable, "-m", "cProfile", "-o", str(profile), *argv]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        _pid, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = adf.AdfResult(child.returncode, out.read().decode(), err.read().decode())
    if result.returncode != 0:
        raise RuntimeError(f"adf run exited {result.returncode}: {result.output[-2000:]}")
    return EngineRun(seconds, usage.ru_maxrss * 1024, result.summary)
