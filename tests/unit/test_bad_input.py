"""Bad input: a clear message naming the field or row, a distinct exit code, no secret, and no
change in the sink beyond the last committed batch."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.unit.support import Result, SqliteDb, flow_manifest
from tests.unit.test_engine_sqlite import incremental, sink, source

Run = Callable[..., Result]


def committed_ids(db: SqliteDb) -> list[int]:
    return [r[0] for r in db.rows("SELECT id FROM exports ORDER BY id")]


def watermark_tie(db: SqliteDb) -> int:
    return int(json.loads(db.scalar("SELECT watermark FROM adf_state"))["tieBreaker"])


# --- the manifest ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("apiVersion: [unclosed\n", "invalid YAML at line 2"),
        ("kind: DataFlow\n  bad: indent\n", "invalid YAML at line 2"),
        ("42\n", "Input should be a valid dictionary"),
    ],
)
def test_malformed_yaml_is_an_invalid_spec(
    run_adf: Run, tmp_path: Path, text: str, message: str, termination_log: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = run_adf("run", "-f", str(path))
    assert result.exit_code == 3
    assert message in result.summary["error"]
    assert json.loads(termination_log.read_text())["exitCode"] == 3


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m["spec"]["sink"]["sql"].update(colour="red"), "spec.sink.sql.colour"),
        (
            lambda m: m["spec"]["source"]["sql"].update(batchSize="many"),
            "spec.source.sql.batchSize",
        ),
        (lambda m: m["spec"]["sink"]["sql"].update(mode="upsert"), "spec.sink.sql.keys"),
        (lambda m: m["spec"].update(onError="retry"), "spec.onError"),
        (lambda m: m["spec"]["source"]["sql"].pop("table"), "spec.source.sql"),
    ],
)
def test_spec_errors_name_the_field(
    run_flow: Run,
    run_adf: Run,
    write_manifest: Callable[[dict[str, Any]], Path],
    source_db: SqliteDb,
    sink_db: SqliteDb,
    change: Callable[[dict[str, Any]], Any],
    field: str,
) -> None:
    manifest = flow_manifest(source(source_db), sink(sink_db))
    change(manifest)
    result = run_flow(manifest)
    assert result.exit_code == 3
    assert field in result.summary["error"]
    assert result.summary["flow"] == "shop/product-sync"
    assert not sink_db.path.exists()

    checked = run_adf("validate", "-f", str(write_manifest(manifest)))
    assert checked.exit_code == 3
    assert field in checked.stderr


def test_validate_accepts_the_example(run_adf: Run) -> None:
    result = run_adf("validate", "-f", "examples/product-sync-local.yaml")
    assert (result.exit_code, result.stdout.strip()) == (0, "valid")


def test_version(run_adf: Run) -> None:
    result = run_adf("--version")
    assert result.exit_code == 0 and result.stdout.startswith("adf 0.")


def test_missing_file_and_missing_env(run_adf: Run, tmp_path: Path) -> None:
    assert run_adf("run", "-f", str(tmp_path / "nope.yaml")).exit_code == 3
    result = run_adf("run", "--spec-env", "ADF_NOT_SET_ANYWHERE")
    assert result.exit_code == 3 and "ADF_NOT_SET_ANYWHERE" in result.summary["error"]


def test_missing_secret_names_the_variable(
    run_flow: Run, sink_db: SqliteDb, source_db: SqliteDb
) -> None:
    manifest = flow_manifest(
        {"url": {"secretKeyRef": {"name": "shop-db", "key": "url"}}, "table": "products"},
        sink(sink_db),
    )
    result = run_flow(manifest)
    assert result.exit_code == 3
    assert "ADF_SECRET_SHOP_DB_URL" in result.summary["error"]


# --- what the spec names does not exist --------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"table": "produce"}, "spec.source.sql.table"),
        ({"columns": ["id", "colour"]}, "spec.source.sql.columns"),
        ({"cursor": {"column": "changed_at"}}, "spec.source.sql.cursor.column"),
        ({"where": "colour = 'red'"}, "spec.source.sql.where"),
    ],
)
def test_unknown_table_or_column_is_a_connection_error(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb, extra: dict[str, Any], field: str
) -> None:
    result = run_flow(flow_manifest(source(source_db, **extra), sink(sink_db)))
    assert result.exit_code == 4
    assert field in result.summary["error"]
    assert not sink_db.path.exists() or "exports" not in sink_db.tables()


def test_unknown_column_in_a_step_names_the_step(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb
) -> None:
    manifest = flow_manifest(
        source(source_db), sink(sink_db), transform=[{"drop": ["sku"]}, {"rename": {"sku": "x"}}]
    )
    result = run_flow(manifest)
    assert result.exit_code == 4
    assert "spec.transform[1].rename: no column 'sku'" in result.summary["error"]


def test_sink_table_without_the_column(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb
) -> None:
    sink_db.execute("CREATE TABLE exports (id INTEGER PRIMARY KEY)")
    result = run_flow(flow_manifest(source(source_db, columns=["id", "name"]), sink(sink_db)))
    assert result.exit_code == 4
    assert "has no column 'name'" in result.summary["error"]
    assert committed_ids(sink_db) == []


def test_unreachable_sqlite_database(run_flow: Run, tmp_path: Path, sink_db: SqliteDb) -> None:
    missing = SqliteDb(tmp_path / "missing" / "shop.db")
    result = run_flow(flow_manifest(source(missing), sink(sink_db)))
    assert result.exit_code == 4
    assert "does not exist" in result.summary["error"]
    assert not missing.path.exists()


def test_unreachable_postgres_never_shows_the_password(
    run_flow: Run, sink_db: SqliteDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql://shop:s3cr3t-pw@127.0.0.1:1/shop?connect_timeout=3"
    monkeypatch.setenv("ADF_SECRET_SHOP_DB_URL", url)
    secret_source = flow_manifest(
        {"url": {"secretKeyRef": {"name": "shop-db", "key": "url"}}, "table": "products"},
        sink(sink_db),
    )
    literal_source = flow_manifest({"url": {"value": url}, "table": "products"}, sink(sink_db))
    for manifest in (secret_source, literal_source):
        result = run_flow(manifest)
        assert result.exit_code == 4
        assert "cannot connect to the source database" in result.summary["error"]
        assert "shop:***@127.0.0.1:1" in result.summary["error"]
        assert "s3cr3t-pw" not in result.stdout + result.stderr


# --- python callables --------------------------------------------------------------------------


def python_step(tmp_path: Path, module: str, body: str, function: str = "f") -> dict[str, Any]:
    (tmp_path / f"{module}.py").write_text(body)
    return {"python": {"callable": f"{module}:{function}", "path": str(tmp_path)}}


@pytest.mark.parametrize(
    ("module", "body", "function", "message"),
    [
        ("nowhere_flow", None, "f", "cannot import module 'nowhere_flow'"),
        ("broken_flow", "def f(row)\n", "f", "SyntaxError"),
        ("empty_flow", "x = 1\n", "f", "'empty_flow:f' is not a callable"),
        ("value_flow", "f = 3\n", "f", "'value_flow:f' is not a callable"),
    ],
)
def test_callable_that_cannot_be_imported(
    run_flow: Run,
    source_db: SqliteDb,
    sink_db: SqliteDb,
    tmp_path: Path,
    module: str,
    body: str | None,
    function: str,
    message: str,
) -> None:
    step = (
        {"python": {"callable": f"{module}:{function}"}}
        if body is None
        else python_step(tmp_path, module, body, function)
    )
    result = run_flow(flow_manifest(source(source_db), sink(sink_db), transform=[step]))
    assert result.exit_code == 4
    assert "spec.transform[0].python.callable" in result.summary["error"]
    assert message in result.summary["error"]


def test_callable_that_raises_fails_after_the_last_committed_batch(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb, tmp_path: Path
) -> None:
    step = python_step(
        tmp_path,
        "raising_flow",
        "def f(row):\n"
        "    if row['id'] == 23:\n"
        "        raise ValueError('no price')\n"
        "    return row\n",
    )
    manifest = flow_manifest(incremental(source_db, batch=5), sink(sink_db), transform=[step])
    result = run_flow(manifest)

    assert result.exit_code == 5
    assert result.summary["error"] == "row id=23: raising_flow:f raised ValueError: no price"
    assert committed_ids(sink_db) == list(range(1, 21))
    assert watermark_tie(sink_db) == 20
    assert (result.summary["rowsWritten"], result.summary["cursorEnd"]) == (
        20,
        "2024-01-01T00:20:00",
    )


def test_callable_returning_junk_is_a_data_error(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb, tmp_path: Path
) -> None:
    step = python_step(tmp_path, "junk_flow", "def f(row):\n    return 42\n")
    result = run_flow(flow_manifest(source(source_db), sink(sink_db), transform=[step]))
    assert result.exit_code == 5
    assert "junk_flow:f returned int; expected a dict" in result.summary["error"]


# --- typed messages and the onError policies ----------------------------------------------------


def typed(manifest: dict[str, Any]) -> dict[str, Any]:
    manifest["spec"]["source"]["schema"] = {
        "columns": [
            {"name": "id", "type": "integer", "nullable": False},
            {"name": "name", "type": "integer", "nullable": False},
            {"name": "price", "type": "number", "nullable": False},
        ]
    }
    return manifest


def test_row_failing_the_schema_names_field_type_and_key(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb
) -> None:
    source_db.execute("UPDATE products SET name = CAST(id AS TEXT) WHERE id NOT IN (12, 14)")
    source_db.execute("UPDATE products SET price = NULL WHERE id = 14")
    result = run_flow(typed(flow_manifest(incremental(source_db, batch=10), sink(sink_db))))

    assert result.exit_code == 5
    assert result.summary["error"] == (
        "row id=12: field 'name': expected integer, got str (and 1 more rows in the batch)"
    )
    assert committed_ids(sink_db) == list(range(1, 11))


@pytest.mark.parametrize("policy", ["skip", "deadLetter"])
def test_skip_and_dead_letter_set_failing_rows_aside(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb, tmp_path: Path, policy: str
) -> None:
    source_db.execute("UPDATE products SET name = CAST(id AS TEXT) WHERE id != 12")
    step = python_step(
        tmp_path,
        f"policy_{policy}_flow",
        "def f(row):\n    if row['id'] == 33:\n        raise KeyError('sku')\n    return row\n",
    )
    extra = {"deadLetter": {"table": "rejects"}} if policy == "deadLetter" else {}
    manifest = typed(
        flow_manifest(
            incremental(source_db, batch=10),
            sink(sink_db),
            transform=[step],
            onError=policy,
            **extra,
        )
    )
    result = run_flow(manifest)

    assert result.exit_code == 0, result.summary
    assert (result.summary["rowsWritten"], result.summary["rowsFailed"]) == (48, 2)
    assert committed_ids(sink_db) == [i for i in range(1, 51) if i not in (12, 33)]
    if policy == "deadLetter":
        letters = sink_db.rows("SELECT flow, row, error FROM rejects ORDER BY id")
        assert [(f, json.loads(r)["id"]) for f, r, _ in letters] == [
            ("shop/product-sync", 12),
            ("shop/product-sync", 33),
        ]
        assert letters[0][2] == "row id=12: field 'name': expected integer, got str"
        assert letters[1][2] == "row id=33: policy_deadLetter_flow:f raised KeyError: 'sku'"
    else:
        assert "rejects" not in sink_db.tables()


@pytest.mark.parametrize("policy", ["fail", "skip", "deadLetter"])
def test_rows_the_sink_refuses(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb, policy: str
) -> None:
    sink_db.execute("CREATE TABLE exports (id INTEGER PRIMARY KEY, price REAL NOT NULL)")
    source_db.execute("UPDATE products SET price = NULL WHERE id IN (7, 18)")
    manifest = flow_manifest(
        incremental(source_db, batch=5, columns=["id", "price"]), sink(sink_db), onError=policy
    )
    result = run_flow(manifest)
    if policy == "fail":
        assert result.exit_code == 5
        assert "NOT NULL constraint failed: exports.price" in result.summary["error"]
        assert committed_ids(sink_db) == [1, 2, 3, 4, 5]
        return
    assert result.exit_code == 0
    assert result.summary["rowsFailed"] == 2
    assert committed_ids(sink_db) == [i for i in range(1, 51) if i not in (7, 18)]
    if policy == "deadLetter":
        errors = sink_db.rows("SELECT error FROM adf_dead_letters ORDER BY id")
        assert errors[0][0].startswith("row id=7: NOT NULL constraint failed")


def test_backfill_window_errors_are_spec_errors(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb
) -> None:
    full_read = flow_manifest(source(source_db), sink(sink_db))
    no_cursor = run_flow(full_read, "--window-from", "2024-01-01")
    assert no_cursor.exit_code == 3
    assert "needs spec.source.sql.cursor" in no_cursor.summary["error"]

    bad_bound = run_flow(
        flow_manifest(incremental(source_db), sink(sink_db)), "--window-to", "next tuesday"
    )
    assert bad_bound.exit_code == 3
    assert "window.to: 'next tuesday' is not a datetime" in bad_bound.summary["error"]
    assert not sink_db.path.exists() or "exports" not in sink_db.tables()


def test_a_url_encoded_password_is_masked_too(run_flow: Run, sink_db: SqliteDb) -> None:
    url = "postgresql://shop:p%40ss%2Fw0rd@127.0.0.1:1/shop?connect_timeout=3"
    result = run_flow(flow_manifest({"url": {"value": url}, "table": "products"}, sink(sink_db)))
    assert result.exit_code == 4
    assert "p%40ss" not in result.stdout + result.stderr
    assert "p@ss/w0rd" not in result.stdout + result.stderr
