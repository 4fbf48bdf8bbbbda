"""Run the engine as a run pod does (`adf run -f … --output json`) and measure time and memory."""

from __future__ import annotations

import compileall
import contextlib
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import profiling
from tests.support import adf

ROOT = Path(__file__).resolve().parent.parent
CURSOR = {"column": "updated_at", "tieBreaker": "id"}
BATCH_SIZE = 10_000
RSS_POLL_SECONDS = 0.02  # the high-water mark only grows: sampling loses at most the last tick
# The process tree's memory every 0.3 s: reading it every tick took ~25 % of a core from the run
# being measured (three processes, ~1.7 ms each), a handicap the baselines did not carry. A run's
# memory is flat while it streams, so the rarer samples still see its plateau.
TREE_EVERY = 15
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
    profile: Path | None = None


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


def _kb(path: str, field: str) -> int | None:
    """A memory field (in kB) of a /proc file, if the process still has one."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None  # a zombie has no memory left to report


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def own_peak_kb(pid: int) -> int | None:
    """The process's own high-water mark (VmHWM): exact, whenever it is read, and cheap to read.

    Not wait4's ru_maxrss: that also counts the bench process image the child was forked from.
    """
    return _kb(f"/proc/{pid}/status", "VmHWM")


def tree_kb(pid: int) -> int:
    """The memory of the engine and its worker processes together, now: their proportional set
    sizes (pages the forked workers still share with it are counted once).

    The kernel walks every page table to answer: ~1.7 ms of CPU per process (measured), so it is
    sampled far less often than the high-water mark.
    """
    return sum(_kb(f"/proc/{p}/smaps_rollup", "Pss") or 0 for p in [pid, *_children(pid)])


def compile_engine() -> None:
    """Write the engine's bytecode, as the image's installed wheel has it.

    pip compiles a wheel's modules when it installs one; an editable install never writes them
    while ``PYTHONDONTWRITEBYTECODE`` is set (as on this machine and in the image), so every
    ``adf run`` would compile ~10,000 lines first: 40-50 ms of each measured start, measured.
    """
    compileall.compile_dir(ROOT / "adf_core", quiet=1)


def run_engine(
    document: dict[str, Any], env: dict[str, str], workdir: Path, profile: Path | None
) -> EngineRun:
    """Run one flow in a child process, sampling its peak RSS until it exits."""
    path = adf.write_manifest(workdir / f"{document['metadata']['name']}.yaml", document)
    argv = adf.run_command(path)
    profile_file = None
    if profile is not None:
        argv, profile_file = profiling.wrap(argv, profile)
    peak_kb, tick = 0, 0
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        while child.poll() is None:
            own = own_peak_kb(child.pid) or 0
            tree = tree_kb(child.pid) if tick % TREE_EVERY == 0 else 0
            peak_kb, tick = max(peak_kb, own, tree), tick + 1
            # not a sleep: the run's time ends when it exits, not at the next tick (~10 ms later)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(RSS_POLL_SECONDS)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        result = adf.AdfResult(child.returncode, out.read().decode(), err.read().decode())
    if result.returncode != 0:
        raise RuntimeError(f"adf run exited {result.returncode}: {result.output[-2000:]}")
    return EngineRun(seconds, peak_kb * 1024, result.summary, profile_file)
