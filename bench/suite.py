"""What is measured and which ratios are judged against which targets.

Measurements run lazily and at most once per bench run (a figure that needs `adf_append` reuses
the one already taken); each one starts from an empty target after a CHECKPOINT, and counts the
rows in its sink afterwards, so a fast but wrong path cannot pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import baselines, data
from bench.engine import (
    DECLARATIVE_STEPS,
    PYTHON_STEP,
    EngineRun,
    compile_engine,
    flow,
    run_engine,
)
from bench.transforms import SQL_SELECT
from tests.support import adf, products
from tests.support.postgres import PostgresServer

PANDAS_SAMPLE = 100_000
DECLARATIVE_SELECT = (
    "SELECT id AS product_id, name, sku, price, category, updated_at, 'shop' AS origin "
    "FROM products"
)
RSS_LIMIT_MB = 250.0


@dataclass
class Measurement:
    name: str
    rows: int
    seconds: float
    rows_in_sink: int
    peak_rss_mb: float | None = None

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "rowsPerSecond": round(self.rate),
            "rowsInSink": self.rows_in_sink,
            "peakRssMB": None if self.peak_rss_mb is None else round(self.peak_rss_mb, 1),
        }


@dataclass(frozen=True)
class Comparison:
    """engine rows/s ÷ baseline rows/s must reach `target`."""

    group: str
    figure: str
    engine: str
    baseline: str
    target: float


COMPARISONS = [
    Comparison("append", "append + python transform / psql \\copy pipe", "adf_append",
               "pipe_append", 0.5),
    Comparison("upsert", "upsert into empty / COPY staging + ON CONFLICT", "adf_upsert_empty",
               "pipe_upsert_empty", 0.6),
    Comparison("upsert", "upsert into full / COPY staging + ON CONFLICT", "adf_upsert_full",
               "pipe_upsert_full", 0.6),
    Comparison("sqlalchemy", "append / SQLAlchemy stream + executemany", "adf_append",
               "sqlalchemy", 3.0),
    Comparison("pandas", "append / pandas read_sql + to_sql(multi)", "adf_append", "pandas", 15.0),
    Comparison("declarative", "declarative steps / matching psql pipe", "adf_declarative",
               "pipe_declarative", 0.8),
    Comparison("sqlite", "SQLite->SQLite / sqlite3 executemany", "adf_sqlite", "sqlite3", 0.6),
]  # fmt: skip
GROUPS = sorted({c.group for c in COMPARISONS} | {"rss"})


@dataclass
class Figure:
    figure: str
    value: float | None
    target: str
    passed: bool | None  # None: could not be measured
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        status = "ERROR" if self.passed is None else "PASS" if self.passed else "MISS"
        return {"figure": self.figure, "value": self.value, "target": self.target,
                "status": status, "note": self.note}  # fmt: skip


@dataclass
class Bench:
    server: PostgresServer
    rows: int
    workdir: Path
    profile_dir: Path | None = None
    repeat: int = 1
    runs: dict[str, list[Measurement]] = field(default_factory=dict)  # every run, in order
    errors: dict[str, str] = field(default_factory=dict)
    profiles: list[Path] = field(default_factory=list)
    source_url: str = ""
    sink_url: str = ""

    def prepare(self) -> None:
        """Build the PostgreSQL and SQLite sources (not part of any measurement)."""
        compile_engine()
        self.source_url, self.sink_url = data.build_postgres(self.server, self.rows)
        data.build_sqlite(self.sqlite_source, self.rows)

    @property
    def sqlite_source(self) -> Path:
        return self.workdir / "source.db"

    @property
    def pandas_rows(self) -> int:
        return min(self.rows, PANDAS_SAMPLE)

    @property
    def results(self) -> dict[str, Measurement]:
        """The fastest run of each measurement, in the order they were first taken."""
        return {name: min(runs, key=lambda m: m.seconds) for name, runs in self.runs.items()}

    def measure(self, name: str) -> Measurement | None:
        """The fastest run of `name` so far, taking one now if there is none (None: it failed)."""
        if name not in self.runs and name not in self.errors:
            self.sample(name)
        return self.results.get(name)

    def sample(self, name: str) -> None:
        """Run `name` once more; a failure ends its runs."""
        if name in self.errors:
            return
        try:
            run = MEASUREMENTS[name](self)
        except Exception as exc:  # one broken path must not hide the others' figures
            self.errors[name] = str(exc)
            return
        self.runs.setdefault(name, []).append(run)

    # --- helpers shared by the measurements -----------------------------------------------

    def timed_pg(self, name: str, table: str, rows: int, move: Callable[[], None]) -> Measurement:
        data.checkpoint(self.server)
        started = time.perf_counter()
        move()
        seconds = time.perf_counter() - started
        return Measurement(name, rows, seconds, data.count_rows(self.server, table))

    def engine_pg(
        self, name: str, table: str, sink: dict[str, Any], steps: list[dict[str, Any]]
    ) -> Measurement:
        env = adf.flow_env(self.source_url, self.sink_url, self.workdir / "termination-log")
        document = flow("bench-" + name.replace("_", "-"), table, sink, steps)
        data.forget_watermark(self.server, f"{document['metadata']['namespace']}/"
                              f"{document['metadata']['name']}")  # fmt: skip
        data.checkpoint(self.server)
        run = self._run_engine(name, document, env)
        return self._engine_measurement(name, run, data.count_rows(self.server, table))

    def _run_engine(self, name: str, document: dict[str, Any], env: dict[str, str]) -> EngineRun:
        profile = self.profile_dir / name if self.profile_dir else None
        run = run_engine(document, env, self.workdir, profile)
        if run.profile is not None:
            self.profiles.append(run.profile)
        return run

    def _engine_measurement(self, name: str, run: EngineRun, in_sink: int) -> Measurement:
        if run.summary.get("rowsRead") != self.rows:
            raise RuntimeError(f"engine read {run.summary.get('rowsRead')} of {self.rows} rows")
        return Measurement(name, self.rows, run.seconds, in_sink, run.peak_rss_bytes / 2**20)


# --- the measurements ---------------------------------------------------------------------------

UPSERT = {"mode": "upsert", "keys": ["id"]}


def _pipe_append(b: Bench) -> Measurement:
    data.recreate_target(b.server, "pipe_append")
    return b.timed_pg("pipe_append", "pipe_append", b.rows,
                      lambda: baselines.pipe_copy(b.server, SQL_SELECT, "pipe_append"))  # fmt: skip


def _pipe_upsert(b: Bench, name: str) -> Measurement:
    def move() -> None:
        baselines.pipe_upsert(b.server, SQL_SELECT, "pipe_upsert", "id", list(products.COLUMNS))

    return b.timed_pg(name, "pipe_upsert", b.rows, move)


def _pipe_upsert_empty(b: Bench) -> Measurement:
    data.recreate_target(b.server, "pipe_upsert")
    return _pipe_upsert(b, "pipe_upsert_empty")


def _pipe_upsert_full(b: Bench) -> Measurement:
    if b.measure("pipe_upsert_empty") is None:
        raise RuntimeError("needs pipe_upsert_empty to fill the target")
    return _pipe_upsert(b, "pipe_upsert_full")


def _pipe_declarative(b: Bench) -> Measurement:
    data.recreate_target(b.server, "pipe_declarative", declarative=True)
    return b.timed_pg("pipe_declarative", "pipe_declarative", b.rows,
                      lambda: baselines.pipe_copy(b.server, DECLARATIVE_SELECT,
                                                  "pipe_declarative"))  # fmt: skip


def _adf_append(b: Bench) -> Measurement:
    data.recreate_target(b.server, "adf_append")
    return b.engine_pg("adf_append", "adf_append", {"mode": "append"}, [PYTHON_STEP])


def _adf_upsert_empty(b: Bench) -> Measurement:
    data.recreate_target(b.server, "adf_upsert")
    return b.engine_pg("adf_upsert_empty", "adf_upsert", UPSERT, [PYTHON_STEP])


def _adf_upsert_full(b: Bench) -> Measurement:
    """A second flow (own watermark) upserting every row again into the filled table."""
    if b.measure("adf_upsert_empty") is None:
        raise RuntimeError("needs adf_upsert_empty to fill the target")
    return b.engine_pg("adf_upsert_full", "adf_upsert", UPSERT, [PYTHON_STEP])


def _adf_declarative(b: Bench) -> Measurement:
    data.recreate_target(b.server, "adf_declarative", declarative=True)
    return b.engine_pg("adf_declarative", "adf_declarative", {"mode": "append"},
                       DECLARATIVE_STEPS)  # fmt: skip


def _sqlalchemy(b: Bench) -> Measurement:
    data.recreate_target(b.server, "sqlalchemy_append")
    return b.timed_pg("sqlalchemy", "sqlalchemy_append", b.rows,
                      lambda: baselines.sqlalchemy_executemany(b.source_url, b.sink_url,
                                                               "sqlalchemy_append"))  # fmt: skip


def _pandas(b: Bench) -> Measurement:
    data.recreate_target(b.server, "pandas_append")
    return b.timed_pg("pandas", "pandas_append", b.pandas_rows,
                      lambda: baselines.pandas_to_sql(b.source_url, b.sink_url, "pandas_append",
                                                      b.pandas_rows))  # fmt: skip


def _sqlite3(b: Bench) -> Measurement:
    sink = b.workdir / "sqlite3-sink.db"
    data.recreate_sqlite_target(sink, "products")
    started = time.perf_counter()
    baselines.sqlite_executemany(b.sqlite_source, sink, "products")
    seconds = time.perf_counter() - started
    return Measurement("sqlite3", b.rows, seconds, data.count_sqlite_rows(sink, "products"))


def _adf_sqlite(b: Bench) -> Measurement:
    sink = b.workdir / "adf-sink.db"
    data.recreate_sqlite_target(sink, "products")
    env = adf.flow_env(f"sqlite:///{b.sqlite_source}", f"sqlite:///{sink}",
                       b.workdir / "termination-log")  # fmt: skip
    run = b._run_engine("adf_sqlite", flow("bench-sqlite", "products", {"mode": "append"}, []), env)
    return b._engine_measurement("adf_sqlite", run, data.count_sqlite_rows(sink, "products"))


MEASUREMENTS: dict[str, Callable[[Bench], Measurement]] = {
    "pipe_append": _pipe_append,
    "adf_append": _adf_append,
    "pipe_upsert_empty": _pipe_upsert_empty,
    "adf_upsert_empty": _adf_upsert_empty,
    "pipe_upsert_full": _pipe_upsert_full,
    "adf_upsert_full": _adf_upsert_full,
    "sqlalchemy": _sqlalchemy,
    "pandas": _pandas,
    "pipe_declarative": _pipe_declarative,
    "adf_declarative": _adf_declarative,
    "sqlite3": _sqlite3,
    "adf_sqlite": _adf_sqlite,
}


def short(error: str) -> str:
    """The last line of an error (a traceback's exception line), for table cells."""
    lines = error.strip().splitlines() or [""]
    return lines[-1][:160]


def compare(bench: Bench, comparison: Comparison) -> Figure:
    """Measure both sides of a comparison and judge the ratio of their rates."""
    engine, baseline = bench.measure(comparison.engine), bench.measure(comparison.baseline)
    target = f">= {comparison.target:g}x"
    if engine is None or baseline is None:
        failed = comparison.engine if engine is None else comparison.baseline
        return Figure(
            comparison.figure, None, target, None, f"{failed}: {short(bench.errors[failed])}"
        )
    ratio = engine.rate / baseline.rate
    note = f"{engine.rate:,.0f} vs {baseline.rate:,.0f} rows/s"
    if baseline.rows != engine.rows:
        note += f" (baseline on a {baseline.rows:,}-row sample)"
    return Figure(comparison.figure, round(ratio, 3), target, ratio >= comparison.target, note)


def peak_rss(bench: Bench) -> Figure:
    """The largest peak RSS of any PostgreSQL engine run, fastest or not (measuring adf_append
    if none ran)."""
    bench.measure("adf_append")
    runs = [
        m
        for name, measured in bench.runs.items()
        if name.startswith("adf_") and name != "adf_sqlite"
        for m in measured
    ]
    target = f"< {RSS_LIMIT_MB:g} MB"
    if not runs:
        return Figure("peak RSS of the engine", None, target, None, "no engine run succeeded")
    worst = max(runs, key=lambda m: m.peak_rss_mb or 0.0)
    value = round(worst.peak_rss_mb or 0.0, 1)
    note = f"{worst.name} at {worst.rows:,} rows"
    return Figure("peak RSS of the engine (MB)", value, target, value < RSS_LIMIT_MB, note)


def rows_check(bench: Bench) -> list[str]:
    """Runs whose sink does not hold exactly the rows they were to move (any run, not only the
    fastest: a wrong result is an error whenever it happens)."""
    return [
        f"{m.name}: {m.rows_in_sink:,} rows in the sink, expected {m.rows:,}"
        for measured in bench.runs.values()
        for m in measured
        if m.rows_in_sink != m.rows
    ]


def measurements_of(groups: list[str], *, baseline_first: bool = False) -> list[str]:
    """The measurements the groups' figures need, each once, in the order of COMPARISONS: an
    engine run next to its baseline (after it with ``baseline_first``), and every upsert into an
    empty target before the upsert into the target it filled."""
    names = [
        n
        for c in COMPARISONS
        if c.group in groups
        for n in ((c.baseline, c.engine) if baseline_first else (c.engine, c.baseline))
    ]
    if "rss" in groups:
        names.append("adf_append")
    return list(dict.fromkeys(names))


def run(bench: Bench, groups: list[str]) -> list[Figure]:
    """All figures of the chosen groups, in the order of COMPARISONS (RSS last).

    Every measurement runs once per round, `repeat` rounds, and keeps its fastest run. Rounds
    interleave an engine run with its baseline, so that a busier minute of a shared machine
    slows both sides of a ratio instead of only the side measured in it; every other round runs
    the baseline of each pair first, so that neither side is always the one that follows the
    previous pair (a run right after the long SQLAlchemy and pandas baselines took 5-10 % longer
    than alone, measured).
    """
    for number in range(bench.repeat):
        for name in measurements_of(groups, baseline_first=number % 2 == 1):
            bench.sample(name)
    figures = [compare(bench, c) for c in COMPARISONS if c.group in groups]
    if "rss" in groups:
        figures.append(peak_rss(bench))
    return figures
