"""A python step over a batch: what each row's call gives, and the failures, in row order."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adf_core import runner, transforms
from adf_core.messages import Batch, TypedSchema
from adf_core.spec import PythonStep, RecordSchema, TransformStep

STEP = """
def f(row):
    n = row["n"]
    if n == 2:
        raise ValueError("two")
    if n == 3:
        return None
    if n == 4:
        return [dict(row, copy=1), dict(row, copy=2)]
    if n == 5:
        return 42
    if n == 6:
        raise KeyError("six")
    if n == 8:
        raise StopIteration
    row["double"] = 2 * n
    return row
"""


def planned(tmp_path: Path, module: str) -> transforms.Plan:
    (tmp_path / f"{module}.py").write_text(STEP)
    step = TransformStep(python=PythonStep(callable=f"{module}:f", path=str(tmp_path)))
    return transforms.plan([step], ["n"], run_start=datetime.now(UTC), push_down=False)


def run(
    tmp_path: Path, module: str, rows: list[dict[str, int]]
) -> tuple[list[dict[str, Any]], list[int], list[tuple[int, str]]]:
    plan = planned(tmp_path, module)
    records: list[dict[str, Any]] = [dict(r) for r in rows]
    origin = [10 * i for i in range(len(rows))]
    failures = plan.steps[0](records, origin)
    return records, origin, failures


def test_every_row_kept_as_its_dict(tmp_path: Path) -> None:
    records, origin, failures = run(tmp_path, "kept_step", [{"n": 1}, {"n": 7}])
    assert records == [{"n": 1, "double": 2}, {"n": 7, "double": 14}]
    assert (origin, failures) == ([0, 10], [])


def test_dropped_expanded_and_failed_rows(tmp_path: Path) -> None:
    rows = [{"n": n} for n in range(1, 10)]
    records, origin, failures = run(tmp_path, "mixed_step", rows)

    assert records == [
        {"n": 1, "double": 2},
        {"n": 4, "copy": 1},
        {"n": 4, "copy": 2},
        {"n": 7, "double": 14},
        {"n": 9, "double": 18},
    ]
    assert origin == [0, 30, 30, 60, 80]
    assert failures == [
        (10, "mixed_step:f raised ValueError: two"),
        (40, "mixed_step:f returned int; expected a dict, a list of dicts or None"),
        (50, "mixed_step:f raised KeyError: 'six'"),
        (70, "mixed_step:f raised StopIteration"),
    ]


def test_a_step_that_raises_stop_iteration_fails_its_row_and_loses_no_other(
    tmp_path: Path,
) -> None:
    """StopIteration ends a ``map`` as if the rows had run out: the step must not stop there."""
    records, origin, failures = run(tmp_path, "stop_step", [{"n": 8}, {"n": 1}, {"n": 8}])
    assert records == [{"n": 1, "double": 2}]
    assert origin == [10]
    assert failures == [
        (0, "stop_step:f raised StopIteration"),
        (20, "stop_step:f raised StopIteration"),
    ]


def test_a_batch_transformed_in_process_counts_and_names_every_refused_row(
    tmp_path: Path,
) -> None:
    schema = RecordSchema.model_validate({"columns": [{"name": "n", "type": "integer"}]})
    batch = Batch(("n",), [(n,) for n in [1, 2, 3, 4, "x", 7, 9]], "test")

    out, failures = runner._transform(batch, TypedSchema(schema), planned(tmp_path, "batch"))

    assert out.columns == ("n", "double", "copy")
    assert out.rows == [(1, 2, None), (4, None, 1), (4, None, 2), (7, 14, None), (9, 18, None)]
    assert out.dropped == 1  # n=3
    assert [f.error for f in failures] == [  # those validation refused, then the steps
        "row #5 of its batch: field 'n': expected integer, got str",
        "row #2 of its batch: batch:f raised ValueError: two",
    ]
