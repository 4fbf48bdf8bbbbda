"""Scenario results of the reliability suite: recorded by the tests, summed up by `python -m soak`.

A scenario test adds one :class:`Trial` per fault it injected. When ``ADF_SOAK_RESULTS`` names a
file, every trial is appended to it as one JSON line, so the soak driver can read what a pytest
process (or several) measured without importing the tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS_ENV = "ADF_SOAK_RESULTS"


@dataclass(frozen=True)
class Trial:
    """One injected fault and what the checks found afterwards."""

    scenario: str
    rows_checked: int = 0
    lost: int = 0
    duplicated: int = 0
    stuck_runs: int = 0
    recovery_seconds: float | None = None
    recovery_from: str = ""  # what the recovery time spans, e.g. "kill -> run final"


@dataclass
class Summary:
    """All trials of one scenario: sums, and the slowest recovery."""

    scenario: str
    trials: int = 0
    rows_checked: int = 0
    lost: int = 0
    duplicated: int = 0
    stuck_runs: int = 0
    max_recovery_seconds: float | None = None
    recovery_from: str = ""

    def add(self, trial: Trial) -> None:
        self.trials += 1
        self.rows_checked += trial.rows_checked
        self.lost += trial.lost
        self.duplicated += trial.duplicated
        self.stuck_runs += trial.stuck_runs
        self.recovery_from = self.recovery_from or trial.recovery_from
        if trial.recovery_seconds is not None:
            self.max_recovery_seconds = max(
                self.max_recovery_seconds or 0.0, trial.recovery_seconds
            )

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.stuck_runs)


@dataclass
class Recorder:
    """Collects the trials of a test session; appends each to ``path`` when one is set."""

    path: Path | None = field(default_factory=lambda: _env_path())
    trials: list[Trial] = field(default_factory=list)

    def add(self, trial: Trial) -> Trial:
        self.trials.append(trial)
        if self.path is not None:
            with self.path.open("a") as out:
                out.write(json.dumps(asdict(trial)) + "\n")
        return trial


def _env_path() -> Path | None:
    value = os.environ.get(RESULTS_ENV)
    return Path(value) if value else None


def load(path: Path) -> list[Trial]:
    """The trials a run appended to `path` (none when the file does not exist)."""
    if not path.exists():
        return []
    return [Trial(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def summarize(trials: Iterable[Trial]) -> list[Summary]:
    """One summary per scenario, in the order the scenarios first appear."""
    by_name: dict[str, Summary] = {}
    for trial in trials:
        by_name.setdefault(trial.scenario, Summary(trial.scenario)).add(trial)
    return list(by_name.values())


HEADER = ("scenario", "trials", "rows checked", "lost", "duplicated", "stuck runs", "max recovery")


def table(summaries: Iterable[Summary]) -> str:
    """A Markdown table (readable as plain text too), as the README quotes it."""
    rows = [HEADER]
    for s in summaries:
        recovery = "-" if s.max_recovery_seconds is None else f"{s.max_recovery_seconds:.1f} s"
        rows.append(
            (
                s.scenario,
                str(s.trials),
                f"{s.rows_checked:,}",
                str(s.lost),
                str(s.duplicated),
                str(s.stuck_runs),
                recovery,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
