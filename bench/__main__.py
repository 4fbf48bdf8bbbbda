"""`python -m bench [--rows N] [--only GROUP] [--json FILE] [--profile DIR]`.

Starts a private PostgreSQL server with default durability settings (fsync on), builds N products
in it and in SQLite, measures the engine and the baselines, and prints rows/s and the judged
ratios. Exits 1 when a measurement failed or a sink does not hold exactly the rows it should;
a missed target is reported (MISS), not an error: this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import profiling, suite
from tests.support.postgres import acquire


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="products to move")
    parser.add_argument(
        "--only",
        action="append",
        choices=suite.GROUPS,
        help="run only this group of figures (repeatable)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="rounds: each measurement runs once per round, the fastest run counts",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    parser.add_argument(
        "--profile",
        type=Path,
        help="profile each engine run into this directory (py-spy when installed, every "
        "thread; else cProfile, main thread only); slows the engine down",
    )
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be positive")
    return args


def measurements_table(bench: suite.Bench) -> Table:
    table = Table(title=f"Measurements ({bench.rows:,} products)")
    for column in ("measurement", "rows", "seconds", "rows/s", "peak RSS MB", "rows in sink"):
        table.add_column(column, justify="left" if column == "measurement" else "right")
    for m in bench.results.values():
        rss = "" if m.peak_rss_mb is None else f"{m.peak_rss_mb:.0f}"
        table.add_row(m.name, f"{m.rows:,}", f"{m.seconds:.2f}", f"{m.rate:,.0f}", rss,
                      f"{m.rows_in_sink:,}")  # fmt: skip
    for name, error in bench.errors.items():
        table.add_row(name, "", "", "[red]failed", "", suite.short(error))
    return table


def figures_table(figures: list[suite.Figure]) -> Table:
    table = Table(title="Figures")
    for column in ("figure", "value", "target", "result", "note"):
        table.add_column(column)
    colours = {"PASS": "green", "MISS": "yellow", "ERROR": "red"}
    for figure in figures:
        status = figure.as_json()["status"]
        value = "" if figure.value is None else f"{figure.value:g}"
        table.add_row(figure.figure, value, figure.target,
                      f"[{colours[status]}]{status}", figure.note)  # fmt: skip
    return table


def markdown(bench: suite.Bench, figures: list[suite.Figure], context: str) -> str:
    """The two tables as Markdown, for bench/RESULTS.md."""
    lines = [context, "", "| measurement | rows | seconds | rows/s | peak RSS MB |",
             "|---|--:|--:|--:|--:|"]  # fmt: skip
    for m in bench.results.values():
        rss = "" if m.peak_rss_mb is None else f"{m.peak_rss_mb:.0f}"
        lines.append(f"| {m.name} | {m.rows:,} | {m.seconds:.2f} | {m.rate:,.0f} | {rss} |")
    lines += ["", "| figure | value | target | result | note |", "|---|--:|---|---|---|"]
    for f in figures:
        value = "" if f.value is None else f"{f.value:g}"
        figure = f.figure.replace("\\", "\\\\")
        lines.append(f"| {figure} | {value} | {f.target} | {f.as_json()['status']} | {f.note} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    groups = args.only or suite.GROUPS
    load_before = os.getloadavg()[0]
    server = acquire(durable=True)
    try:
        with tempfile.TemporaryDirectory(prefix="adf-bench-") as workdir:
            bench = suite.Bench(server, args.rows, Path(workdir), args.profile, args.repeat)
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
            with console.status(f"building {args.rows:,} products"):
                bench.prepare()
            with console.status("measuring"):
                figures = suite.run(bench, groups)
    finally:
        server.stop()
    context = (
        f"{args.rows:,} products, fastest of {args.repeat} interleaved run(s), "
        f"{os.cpu_count()} CPUs, "
        f"load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after, "
        f"Python {platform.python_version()} ({os.path.realpath(sys.executable)})"
    )
    console.print(context)
    console.print(measurements_table(bench))
    console.print(figures_table(figures))
    for profile in bench.profiles:
        if profile.suffix == ".stacks":
            console.print(profiling.summarise(profile), highlight=False)
        else:
            console.print(f"{profile}: read with python -m pstats (main thread only)")
    problems = suite.rows_check(bench) + [f"{n}: {e}" for n, e in bench.errors.items()]
    for problem in problems:
        console.print(f"[red]{problem}")
    if args.json:
        report = {
            "rows": args.rows,
            "context": context,
            "measurements": {
                n: {**m.as_json(), "runs": [round(r.seconds, 3) for r in bench.runs[n]]}
                for n, m in bench.results.items()
            },
            "errors": bench.errors,
            "figures": [f.as_json() for f in figures],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(bench, figures, context))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
