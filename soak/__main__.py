"""Run the reliability scenarios in their long form and report: scenario, trials, rows checked,
lost, duplicated, stuck runs, max recovery time. Exit status 1 when a test failed or any row was
lost or duplicated or any run left stuck.

    python -m soak                      # every scenario, ADF_SOAK=1
    python -m soak -k engine            # some of them (pytest -k)
    python -m soak --no-write           # print only, leave soak/RESULTS.md alone
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from soak.report import RESULTS_ENV, Summary, load, summarize, table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SUITE = "tests/reliability"


def run_suite(results: Path, pytest_args: list[str]) -> int:
    """pytest over the suite with the long form switched on; its exit code."""
    env = {**os.environ, "ADF_SOAK": "1", RESULTS_ENV: str(results)}
    command = [sys.executable, "-m", "pytest", SUITE, "-p", "no:cacheprovider", "-q",
               "-o", "timeout=3600", *pytest_args]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def markdown(summaries: list[Summary], exit_code: int, seconds: float, args: list[str]) -> str:
    load1, load5, _ = os.getloadavg()
    verdict = "all tests passed" if exit_code == 0 else f"pytest exit code {exit_code}"
    return "\n".join(
        [
            "# Reliability soak results",
            "",
            f"`{' '.join(['python -m soak', *args])}`",
            f"on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
            f"load {load1:.1f}/{load5:.1f}, Python {platform.python_version()}; "
            f"{seconds / 60:.1f} min, {verdict}.",
            "",
            table(summaries),
            "",
            "Rows checked: source rows compared with the sink after each trial (row by row and"
            " as count + md5 of the ordered rows). Lost / duplicated: source rows missing from"
            " the sink / rows present twice. Stuck runs: DataFlowRuns not in a final phase once"
            " the trial settled. Max recovery, per scenario:",
            "",
            *(f"- {s.scenario}: {s.recovery_from}" for s in summaries if s.recovery_from),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__.split("\n")[0])
    parser.add_argument("--no-write", action="store_true", help="do not write soak/RESULTS.md")
    args, pytest_args = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory(prefix="adf-soak-") as folder:
        results = Path(folder) / "trials.jsonl"
        started = time.monotonic()
        exit_code = run_suite(results, pytest_args)
        summaries = summarize(load(results))
    elapsed = time.monotonic() - started
    print()
    print(table(summaries))
    if not args.no_write:
        RESULTS.write_text(markdown(summaries, exit_code, elapsed, pytest_args))
        print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    clean = bool(summaries) and all(s.clean for s in summaries)
    return 0 if exit_code == 0 and clean else 1


if __name__ == "__main__":
    sys.exit(main())
