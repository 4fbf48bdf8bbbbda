"""Pure parts of the engine: messages, watermarks, the summary, transform planning."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from adf_core.connectors.base import Constant
from adf_core.errors import ConnectionFailure
from adf_core.messages import Batch, Typed, TypedSchema, Watermark, last_per_key, record_maker
from adf_core.spec import RecordSchema, TransformStep
from adf_core.summary import Summary, termination_log_path
from adf_core.transforms import plan, run_steps

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "columns",
    [(), ("id",), ("a b", "it's", 'q"uote', "k0", "v0", "{x}", "ünï"), ("dup", "x", "dup")],
)
def test_a_row_becomes_the_dict_zip_makes(columns: tuple[str, ...]) -> None:
    row = tuple(range(len(columns)))

    assert record_maker(columns)(*row) == dict(zip(columns, row, strict=True))
    assert Batch(columns, [row, row]).dicts() == [dict(zip(columns, row, strict=True))] * 2


def test_the_last_row_of_each_key_is_kept() -> None:
    rows = [(1, "a", "x"), (2, "a", "y"), (1, "a", "z"), (1, "b", "w")]

    assert last_per_key(("id", "kind", "v"), rows, ["id", "kind"]) == [2, 1, 3]
    assert last_per_key(("id", "kind", "v"), rows, ["v"]) is None  # no two share a key


@pytest.mark.parametrize(
    "watermark",
    [
        Watermark(datetime(2024, 1, 2, 3, 4, 5, 6), 7),
        Watermark(datetime(2024, 1, 2, tzinfo=UTC), "abc"),
        Watermark(date(2024, 1, 2), None),
        Watermark(Decimal("12.50"), Decimal("1")),
        Watermark(42, 3.5),
    ],
)
def test_watermark_round_trips_with_its_types(watermark: Watermark) -> None:
    again = Watermark.from_json(watermark.to_json())
    assert again == watermark
    assert type(again.cursor) is type(watermark.cursor)


def test_typed_schema_coerces_and_reports_each_bad_row() -> None:
    schema = TypedSchema(
        RecordSchema.model_validate(
            {
                "columns": [
                    {"name": "id", "type": "integer", "nullable": False},
                    {"name": "at", "type": "datetime"},
                    {"name": "tags", "type": "json"},
                ],
                "allowExtra": True,
            }
        )
    )
    records = [
        {"id": "1", "at": "2024-01-01T00:00:00", "tags": ["a"], "extra": True},
        {"id": "x", "at": None, "tags": None},
        {"id": None, "at": 5.5, "tags": {}},
        {"at": None, "tags": None},
    ]
    good, kept, failures = schema.validate(records, ["id"])
    assert good == [{"id": 1, "at": datetime(2024, 1, 1), "tags": ["a"], "extra": True}]
    assert kept == [0]
    assert [f.error for f in failures] == [
        "row id=x: field 'id': expected integer, got str",
        "row id=None: field 'id': expected integer, got null (the field is not nullable)",
        "row #4 of its batch: field 'id': missing (expected integer)",
    ]


def test_batch_messages_are_typed_once_validated() -> None:
    schema = RecordSchema.model_validate({"columns": [{"name": "id", "type": "integer"}]})
    batch = Batch(("id",), [(1,), (2,)], "sql:t", Watermark(2, None), ("id",), schema)
    messages = list(batch.messages())
    assert all(isinstance(m, Typed) for m in messages)
    assert [(m.key, m.source, m.cursor) for m in messages] == [
        ("id=1", "sql:t", 2),
        ("id=2", "sql:t", 2),
    ]


def test_batch_from_dicts_unions_columns() -> None:
    like = Batch(("a",), [], "s")
    rebuilt = Batch.from_dicts([{"a": 1}, {"b": 2, "a": 3}], like=like)
    assert rebuilt.columns == ("a", "b")
    assert rebuilt.rows == [(1, None), (3, 2)]


def test_summary_has_the_contract_keys_and_fits_a_termination_message() -> None:
    summary = Summary(flow="ns/f", cursor_end=datetime(2024, 1, 1), error="x" * 10_000)
    text = summary.to_json()
    data = json.loads(text)
    assert len(text.encode()) <= 4096
    assert data["error"].endswith("(truncated)")
    assert data["cursorEnd"] == "2024-01-01T00:00:00"
    assert list(data) == [
        "rowsRead",
        "rowsWritten",
        "rowsSkipped",
        "rowsFailed",
        "cursorStart",
        "cursorEnd",
        "durationSeconds",
        "error",
        "exitCode",
        "flow",
    ]


def test_termination_log_path_prefers_the_environment() -> None:
    assert termination_log_path({"ADF_TERMINATION_LOG": "/x/log"}) == "/x/log"


def steps(*raw: dict[str, object]) -> list[TransformStep]:
    return [TransformStep.model_validate(s) for s in raw]


def test_declarative_steps_become_one_projection() -> None:
    planned = plan(
        steps(
            {"rename": {"id": "product_id"}},
            {"set": {"origin": "shop", "at": {"now": True}}},
            {"drop": ["sku"]},
        ),
        ["id", "sku", "price"],
        run_start=NOW,
        push_down=True,
    )
    assert not planned.needs_rows
    assert planned.projection is not None
    assert planned.projection.columns == (
        ("product_id", "id"),
        ("price", "price"),
        ("origin", Constant("shop")),
        ("at", Constant(NOW)),
    )


def test_steps_after_a_python_step_run_in_python() -> None:
    planned = plan(
        steps(
            {"rename": {"id": "key"}},
            {"python": {"callable": "json:dumps"}},
            {"select": ["whatever"]},
        ),
        ["id"],
        run_start=NOW,
        push_down=True,
    )
    assert planned.projection is not None and planned.projection.columns == (("key", "id"),)
    assert len(planned.steps) == 2


def test_without_push_down_every_step_runs_in_python_with_the_same_result() -> None:
    raw = steps({"rename": {"a": "b"}}, {"set": {"c": 1}}, {"select": ["c", "b"]})
    planned = plan(raw, ["a", "z"], run_start=NOW, push_down=False)
    batch = Batch(("a", "z"), [(1, 2), (3, 4)], "s")
    records = batch.dicts()
    assert run_steps(planned, batch, records, [0, 1]) == ([], 0)
    out = Batch.from_dicts(records, like=batch)
    assert (out.columns, out.rows) == (("c", "b"), [(1, 1), (1, 3)])


def test_a_step_naming_a_missing_column_fails_before_any_row_moves() -> None:
    with pytest.raises(ConnectionFailure, match=r"spec.transform\[0\].select: no column 'q'"):
        plan(steps({"select": ["q"]}), ["a"], run_start=NOW, push_down=True)
