"""The command line shared by the control-plane benchmarks (operator, heartbeat): parse, measure
in a work folder, print the figures with their targets and verdicts as JSON."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol


class Result(Protocol):
    def verdicts(self) -> dict[str, Any]: ...


def run(
    argv: list[str] | None,
    *,
    name: str,
    doc: str,
    default_flows: int,
    flows_help: str,
    measure: Callable[[int, Path, Callable[[str], None]], Any],
    targets: dict[str, Any],
    complete: Callable[[Any, int], bool],
) -> int:
    """Exit 0 when `complete(result, flows)` holds (every flow got its run), else 1."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}_bench",
                                     description=doc.splitlines()[0])  # fmt: skip
    parser.add_argument("--flows", type=int, default=default_flows, help=flows_help)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep", type=Path, help="keep logs here (default: a temp dir)")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"[{name} bench] {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix=f"adf-{name}-bench-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        result = measure(args.flows, workdir, log)
    report = {**asdict(result), "targets": targets, "verdicts": result.verdicts()}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if complete(result, args.flows) else 1
