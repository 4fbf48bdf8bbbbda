"""`--profile DIR`: where the engine's time goes, per thread.

The engine reads, transforms and writes in three threads, and cProfile only sees the main one, so
the sampling profiler py-spy (a dev tool, `pip install py-spy`) records every thread as collapsed
stacks; `summarise` prints the frames that hold the most samples per thread. Without py-spy the
engine runs under cProfile (main thread only) and the `.prof` file is read with `python -m pstats`.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path

SAMPLES_PER_SECOND = "200"


def py_spy() -> str | None:
    """The py-spy binary of this virtualenv, else of PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def wrap(argv: list[str], output: Path) -> tuple[list[str], Path]:
    """The command line that profiles `argv`, and the file it will write."""
    spy = py_spy()
    if spy is None:
        target = output.with_suffix(".prof")
        return [sys.executable, "-m", "cProfile", "-o", str(target), *argv], target
    target = output.with_suffix(".stacks")
    record = [spy, "record", "--threads", "--format", "raw", "--rate", SAMPLES_PER_SECOND]
    return [*record, "--output", str(target), "--", *argv], target


def summarise(stacks: Path, top: int = 8) -> str:
    """Per thread: its share of the samples and the frames it spends them in (self time)."""
    per_thread: Counter[str] = Counter()
    leaves: dict[str, Counter[str]] = {}
    for line in stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0].split(":")[-1].strip() or "main"
        per_thread[thread] += int(count)
        leaves.setdefault(thread, Counter())[frames[-1]] += int(count)
    total = sum(per_thread.values()) or 1
    lines = [f"{stacks.stem}: {total} samples at {SAMPLES_PER_SECOND}/s"]
    for thread, samples in per_thread.most_common():
        lines.append(f"  thread {thread}: {samples / total:.0%}")
        for frame, in_frame in leaves[thread].most_common(top):
            lines.append(f"    {in_frame / total:6.1%}  {frame}")
    return "\n".join(lines)
