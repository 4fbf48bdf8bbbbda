"""Transform steps: rename, select, drop, set, and python callables.

The planner walks the steps symbolically over the source's columns, so a step that names a
missing column fails before any row moves. The longest leading run of declarative steps becomes a
:class:`~adf_core.connectors.base.Projection` that the source computes in SQL (``SELECT id AS
product_id, 'x' AS origin …``); only the remaining steps cost Python per row. With a typed schema
nothing is pushed down, because the schema describes the source's own columns.

Python callables (``module:function``) receive one row as a dict and return a dict, a list of
dicts, or None to drop the row. Between two PostgreSQL databases they run in worker processes
(see :mod:`adf_core.workers`), each batch in one of them: a callable must not count on state
that it keeps across rows of different batches (set ``ADF_STEP_WORKERS=0`` if it does).

Modules are imported from the step's ``path`` (relative to the manifest), from the directories
in ``ADF_TRANSFORMS_PATH`` (``os.pathsep``-separated; the operator mounts ConfigMaps at
``/etc/adf/transforms/<configMap>`` and lists them there), or from the installed packages.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from adf_core.connectors.base import Constant, Projection
from adf_core.errors import ConnectionFailure
from adf_core.messages import Batch, RowFailure, row_key
from adf_core.spec import NowValue, PythonStep, SetValue, TransformStep

Record = dict[str, Any]
RowFunction = Callable[[Record], Any]
StepFailures = list[tuple[int, str]]  # (source row position, message)
RowStep = Callable[[list[Record], list[int]], StepFailures]
TRANSFORMS_PATH_ENV = "ADF_TRANSFORMS_PATH"
CONFIG_MAP_ROOT = "/etc/adf/transforms"


def constant(value: SetValue, run_start: datetime) -> Any:
    return run_start if isinstance(value, NowValue) else value


def load_callable(step: PythonStep, field: str, base_dir: Path | None = None) -> RowFunction:
    """Import ``module:function``; an unimportable or non-callable target is a ConnectionFailure."""
    dirs = [str((base_dir or Path.cwd()) / step.path)] if step.path else []
    if step.config_map:  # where the operator mounts it, in case ADF_TRANSFORMS_PATH is not set
        dirs.append(f"{CONFIG_MAP_ROOT}/{step.config_map}")
    dirs += [d for d in os.environ.get(TRANSFORMS_PATH_ENV, "").split(os.pathsep) if d]
    for directory in reversed(dirs):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    module_name, _, attr = step.callable.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # any failure while importing user code
        raise ConnectionFailure(
            f"{field}: cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    for part in attr.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise ConnectionFailure(f"{field}: {step.callable!r} is not a callable in {module_name!r}")
    return target  # type: ignore[no-any-return]


@dataclass
class Plan:
    """Steps split into a pushed-down projection and the rest, applied in Python."""

    projection: Projection | None
    steps: list[RowStep] = field(default_factory=list)

    @property
    def needs_rows(self) -> bool:
        """Whether any step runs in Python (rows must become dicts)."""
        return bool(self.steps)


def plan(
    steps: Sequence[TransformStep],
    source_columns: Sequence[str],
    *,
    run_start: datetime,
    push_down: bool,
    base_dir: Path | None = None,
) -> Plan:
    """Check the steps against the source's columns and decide what runs where."""
    current: list[tuple[str, str | Constant]] = [(c, c) for c in source_columns]
    pushed = 0
    known = True  # column names are known until a python step runs
    for index, step in enumerate(steps):
        if step.python is not None:
            known = False
        elif known:
            current = _symbolic(step, current, f"spec.transform[{index}]", run_start)
            if push_down and pushed == index:
                pushed = index + 1
    projection = None
    if pushed:
        head: list[tuple[str, str | Constant]] = [(c, c) for c in source_columns]
        for index, step in enumerate(steps[:pushed]):
            head = _symbolic(step, head, f"spec.transform[{index}]", run_start)
        projection = Projection(tuple(head))
    python = [
        _row_step(step, f"spec.transform[{i}]", run_start, base_dir)
        for i, step in enumerate(steps)
        if i >= pushed
    ]
    return Plan(projection, python)


def _symbolic(
    step: TransformStep,
    current: list[tuple[str, str | Constant]],
    field: str,
    run_start: datetime,
) -> list[tuple[str, str | Constant]]:
    names = [n for n, _ in current]

    def need(kind: str, wanted: Sequence[str]) -> None:
        missing = [w for w in wanted if w not in names]
        if missing:
            raise ConnectionFailure(
                f"{field}.{kind}: no column {', '.join(map(repr, missing))} "
                f"(columns at this step: {', '.join(names)})"
            )

    if step.rename is not None:
        need("rename", list(step.rename))
        new_names = set(step.rename.values())
        return [
            (step.rename.get(n, n), ref)
            for n, ref in current
            if n in step.rename or n not in new_names
        ]
    if step.select is not None:
        need("select", step.select)
        refs = dict(current)
        return [(n, refs[n]) for n in step.select]
    if step.drop is not None:
        need("drop", step.drop)
        return [(n, ref) for n, ref in current if n not in step.drop]
    assert step.set is not None
    values = {n: Constant(constant(v, run_start)) for n, v in step.set.items()}
    kept = [(n, values.pop(n) if n in values else ref) for n, ref in current]
    return kept + list(values.items())


def _row_step(
    step: TransformStep, field: str, run_start: datetime, base_dir: Path | None
) -> RowStep:
    """A step over a batch of dicts, in place; ``origin`` maps each record to its source row."""
    if step.python is not None:
        return _python_step(step.python, f"{field}.python", base_dir)
    if step.rename is not None:
        mapping = step.rename
        targets = set(mapping.values())

        def rename(records: list[Record], origin: list[int]) -> StepFailures:
            records[:] = [
                {mapping.get(k, k): v for k, v in r.items() if k in mapping or k not in targets}
                for r in records
            ]
            return []

        return rename
    if step.select is not None:
        wanted = list(step.select)

        def select(records: list[Record], origin: list[int]) -> StepFailures:
            records[:] = [{c: r.get(c) for c in wanted} for r in records]
            return []

        return select
    if step.drop is not None:
        dropped = set(step.drop)

        def drop(records: list[Record], origin: list[int]) -> StepFailures:
            records[:] = [{k: v for k, v in r.items() if k not in dropped} for r in records]
            return []

        return drop
    assert step.set is not None
    values = {n: constant(v, run_start) for n, v in step.set.items()}

    def set_(records: list[Record], origin: list[int]) -> StepFailures:
        for r in records:
            r.update(values)
        return []

    return set_


@dataclass(frozen=True, slots=True)
class _Raised:
    """In place of the result of a call that raised: the row's failure message."""

    error: str


def _call_each(function: Callable[[Record], Any], records: list[Record], name: str) -> list[Any]:
    """``function(record)`` for every record, a :class:`_Raised` where the call raised.

    The calls run in C's loop (``list.extend`` over ``map``), which keeps what it appended
    when a call raises; the loop then goes on from the next record. A worker's whole pipeline
    took 1.49-1.68 µs per row so, 1.68-1.97 with a ``try`` per row in Python (measured).
    """
    results: list[Any] = []
    remaining = iter(records)
    while len(results) < len(records):
        try:
            results.extend(map(function, remaining))
            if len(results) == len(records):
                break
            error = "StopIteration"  # from the call: it ends ``map`` as if the records ran out
        except Exception as exc:  # user code: any exception is a row failure
            error = f"{type(exc).__name__}: {exc}"
        results.append(_Raised(f"{name} raised {error}"))
    return results


def _python_step(step: PythonStep, field: str, base_dir: Path | None) -> RowStep:
    function = load_callable(step, f"{field}.callable", base_dir)
    name = step.callable

    def run(records: list[Record], origin: list[int]) -> StepFailures:
        results = _call_each(function, records, name)
        if set(map(type, results)) <= {dict}:  # a dict for every row
            records[:] = results
            return []
        out: list[Record] = []
        out_origin: list[int] = []
        failed: StepFailures = []
        for result, source_index in zip(results, origin, strict=True):
            if result is None:
                continue
            if isinstance(result, dict):
                out.append(result)
                out_origin.append(source_index)
            elif isinstance(result, list) and all(isinstance(r, dict) for r in result):
                out.extend(result)
                out_origin.extend([source_index] * len(result))
            elif isinstance(result, _Raised):
                failed.append((source_index, result.error))
            else:
                kind = type(result).__name__
                failed.append(
                    (
                        source_index,
                        f"{name} returned {kind}; expected a dict, a list of dicts or None",
                    )
                )
        records[:] = out
        origin[:] = out_origin
        return failed

    return run


def run_steps(
    steps_plan: Plan, batch: Batch, records: list[Record], origin: list[int], first: int = 0
) -> tuple[list[RowFailure], int]:
    """Run the Python steps over ``records`` in place (``origin`` follows them); failures name
    the source row by key and carry its data. Also returns how many source rows left no row
    and no failure (a step dropped them). ``batch`` may be a part of a batch that starts at
    row ``first`` of it (rows without a key are named by their position in the whole batch)."""
    failures: list[RowFailure] = []
    entering = set(origin)
    failed: set[int] = set()
    for step in steps_plan.steps:
        for position, message in step(records, origin):
            data = dict(zip(batch.columns, batch.rows[position], strict=True))
            key = row_key(data, batch.key_columns, first + position)
            failures.append(RowFailure(data, key, f"row {key}: {message}"))
            failed.add(position)
    return failures, len(entering - failed - set(origin))
