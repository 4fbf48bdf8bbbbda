"""The engine end to end on SQLite through `adf run`: write modes, incremental runs, transforms."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.unit.support import Result, SqliteDb, flow_manifest, product

Run = Callable[..., Result]
SUMMARY_KEYS = {
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
}


def source(db: SqliteDb, **extra: Any) -> dict[str, Any]:
    return {"url": {"value": db.url}, "table": "products", **extra}


def sink(db: SqliteDb, table: str = "exports", **extra: Any) -> dict[str, Any]:
    return {"url": {"value": db.url}, "table": table, **extra}


def incremental(db: SqliteDb, batch: int = 7, **extra: Any) -> dict[str, Any]:
    return source(db, cursor={"column": "updated_at", "tieBreaker": "id"}, batchSize=batch, **extra)


def ids(db: SqliteDb, table: str = "exports", key: str = "id") -> list[int]:
    return [r[0] for r in db.rows(f"SELECT {key} FROM {table} ORDER BY {key}")]


def test_append_copies_every_row_and_reports_a_summary(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb, termination_log: Path
) -> None:
    result = run_flow(flow_manifest(source(source_db, batchSize=8), sink(sink_db)))

    assert result.exit_code == 0, result.stderr
    assert set(result.summary) == SUMMARY_KEYS
    assert result.summary["rowsRead"] == result.summary["rowsWritten"] == 50
    assert result.summary["flow"] == "shop/product-sync"
    assert result.summary["error"] is None
    assert json.loads(termination_log.read_text()) == result.summary
    assert sink_db.rows("SELECT * FROM exports ORDER BY id") == source_db.rows(
        "SELECT * FROM products ORDER BY id"
    )


def test_append_without_cursor_appends_again_on_each_run(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb
) -> None:
    manifest = flow_manifest(source(source_db, where="active"), sink(sink_db))
    assert run_flow(manifest).exit_code == 0
    assert run_flow(manifest).exit_code == 0
    assert sink_db.scalar("SELECT count(*) FROM exports") == 2 * 40


def test_upsert_inserts_then_updates_by_key_and_skips_unchanged_rows(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb
) -> None:
    manifest = flow_manifest(
        source(source_db, batchSize=9),
        sink(sink_db, mode="upsert", keys=["id"], skipUnchanged=True),
    )
    first = run_flow(manifest)
    source_db.execute("UPDATE products SET price = price + 100 WHERE id IN (3, 4)")
    second = run_flow(manifest)

    assert (first.summary["rowsWritten"], first.summary["rowsSkipped"]) == (50, 0)
    assert (second.summary["rowsWritten"], second.summary["rowsSkipped"]) == (2, 48)
    assert sink_db.rows("SELECT id, price FROM exports WHERE id IN (3, 4) ORDER BY id") == [
        (3, 102.5),
        (4, 103.0),
    ]
    assert sink_db.scalar("SELECT count(*) FROM exports") == 50


def test_upsert_without_skip_unchanged_rewrites_every_row(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb
) -> None:
    manifest = flow_manifest(source(source_db), sink(sink_db, mode="upsert", keys=["id"]))
    run_flow(manifest)
    again = run_flow(manifest)
    assert (again.summary["rowsWritten"], again.summary["rowsSkipped"]) == (50, 0)
    assert sink_db.scalar("SELECT count(*) FROM exports") == 50


def test_upsert_into_existing_table_needs_a_unique_key(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb
) -> None:
    sink_db.execute("CREATE TABLE exports (id INTEGER, name TEXT)")
    manifest = flow_manifest(
        source(source_db, columns=["id", "name"]), sink(sink_db, mode="upsert", keys=["id"])
    )
    result = run_flow(manifest)
    assert result.exit_code == 4
    assert "spec.sink.sql.keys" in result.summary["error"]
    assert "unique" in result.summary["error"]


@pytest.mark.parametrize(
    "ddl",
    [
        ["CREATE TABLE exports (id INTEGER PRIMARY KEY, name TEXT)"],
        [
            "CREATE TABLE exports (id INTEGER, name TEXT)",
            "CREATE UNIQUE INDEX by_id ON exports (id)",
        ],
        ["CREATE TABLE exports (id INTEGER, name TEXT, UNIQUE (id))"],
    ],
    ids=["primary key", "unique index", "unique constraint"],
)
def test_upsert_into_existing_table_keyed_by_any_unique_key(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb, ddl: list[str]
) -> None:
    for statement in ddl:
        sink_db.execute(statement)
    sink_db.execute("INSERT INTO exports VALUES (1, 'stale')")
    manifest = flow_manifest(
        source(source_db, columns=["id", "name"]), sink(sink_db, mode="upsert", keys=["id"])
    )
    result = run_flow(manifest)

    assert result.exit_code == 0, result.summary
    assert sink_db.scalar("SELECT count(*) FROM exports") == 50
    assert sink_db.scalar("SELECT name FROM exports WHERE id = 1") == source_db.scalar(
        "SELECT name FROM products WHERE id = 1"
    )


def test_replace_swaps_in_the_new_table_with_its_indexes(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb
) -> None:
    sink_db.execute("CREATE TABLE exports (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    sink_db.execute("CREATE INDEX exports_name ON exports (name)")
    sink_db.execute("INSERT INTO exports VALUES (1000, 'stale')")
    manifest = flow_manifest(
        source(source_db, columns=["id", "name"], where="active", batchSize=6),
        sink(sink_db, mode="replace"),
    )
    result = run_flow(manifest)

    assert result.exit_code == 0, result.summary
    assert ids(sink_db) == [i for i in range(1, 51) if i % 5 != 0]
    assert "exports__adf_new" not in sink_db.tables()
    indexes = sink_db.rows(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    )
    assert indexes == [("exports_name",)]
    assert run_flow(manifest).exit_code == 0  # a second replace works the same
    assert ids(sink_db) == [i for i in range(1, 51) if i % 5 != 0]


def test_failed_replace_leaves_the_old_table_untouched(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb
) -> None:
    sink_db.execute("CREATE TABLE exports (id INTEGER PRIMARY KEY, price REAL NOT NULL)")
    sink_db.execute("INSERT INTO exports VALUES (1000, 1.0)")
    source_db.execute("UPDATE products SET price = NULL WHERE id = 30")
    manifest = flow_manifest(
        source(source_db, columns=["id", "price"], batchSize=10), sink(sink_db, mode="replace")
    )
    result = run_flow(manifest)
    assert result.exit_code == 5
    assert "NOT NULL" in result.summary["error"]
    assert sink_db.rows("SELECT * FROM exports") == [(1000, 1.0)]


def test_incremental_runs_pick_up_inserts_and_updates_only(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb
) -> None:
    manifest = flow_manifest(incremental(source_db), sink(sink_db, mode="upsert", keys=["id"]))
    first = run_flow(manifest)
    assert (first.summary["rowsRead"], first.summary["cursorEnd"]) == (50, "2024-01-01T00:50:00")

    source_db.add_products([product(i) for i in range(51, 56)])
    source_db.execute(
        "UPDATE products SET price = 999, updated_at = '2024-01-01 01:30:00.000000' WHERE id = 2"
    )
    second = run_flow(manifest)
    third = run_flow(manifest)

    assert second.summary["rowsRead"] == 6
    assert second.summary["cursorStart"] == "2024-01-01T00:50:00"
    assert second.summary["cursorEnd"] == "2024-01-01T01:30:00"
    assert third.summary["rowsRead"] == 0
    assert third.summary["cursorEnd"] == "2024-01-01T01:30:00"
    assert ids(sink_db) == list(range(1, 56))
    assert sink_db.scalar("SELECT price FROM exports WHERE id = 2") == 999
    state = sink_db.rows("SELECT flow_id, watermark FROM adf_state")
    assert [s[0] for s in state] == ["shop/product-sync"]
    assert json.loads(state[0][1])["tieBreaker"] == 2


def test_rows_sharing_a_cursor_value_are_not_lost_across_batch_edges_and_runs(
    run_flow: Run, tmp_path: Path, sink_db: SqliteDb
) -> None:
    db = SqliteDb(tmp_path / "ties.db")
    db.add_products([product(i, minute=i // 10) for i in range(1, 31)])  # groups of 10 ties
    manifest = flow_manifest(incremental(db, batch=4), sink(sink_db), maxRowsPerRun=7)

    reads = []
    for _ in range(6):
        result = run_flow(manifest)
        assert result.exit_code == 0, result.summary
        reads.append(result.summary["rowsRead"])
    db.add_products([product(i, minute=3) for i in range(31, 34)])  # tie with the watermark
    late = run_flow(manifest)

    assert reads == [7, 7, 7, 7, 2, 0]
    assert ids(sink_db) == list(range(1, 34))
    assert late.summary["rowsRead"] == 3


def test_lag_rereads_recent_rows_so_late_rows_are_caught(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb
) -> None:
    manifest = flow_manifest(
        source(source_db, cursor={"column": "updated_at", "tieBreaker": "id", "lag": 300}),
        sink(sink_db, mode="upsert", keys=["id"], skipUnchanged=True),
    )
    run_flow(manifest)
    source_db.add_products([product(100, minute=48)])  # committed late, behind the watermark
    result = run_flow(manifest)
    assert 100 in ids(sink_db)
    assert result.summary["rowsWritten"] == 1
    assert result.summary["cursorEnd"] == "2024-01-01T00:50:00"  # never moves backwards


def test_backfill_window_reads_the_range_and_leaves_the_watermark(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb
) -> None:
    manifest = flow_manifest(incremental(source_db), sink(sink_db, mode="upsert", keys=["id"]))
    run_flow(manifest)
    before = sink_db.rows("SELECT watermark FROM adf_state")
    result = run_flow(
        manifest, "--window-from", "2024-01-01T00:10:00", "--window-to", "2024-01-01T00:20:00"
    )
    assert result.exit_code == 0
    assert result.summary["rowsRead"] == 10
    assert sink_db.rows("SELECT watermark FROM adf_state") == before


def test_window_from_environment_and_a_separate_state_key(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADF_WINDOW_FROM", "2024-01-01T00:45:00")
    manifest = flow_manifest(incremental(source_db), sink(sink_db))
    assert run_flow(manifest).summary["rowsRead"] == 6
    monkeypatch.delenv("ADF_WINDOW_FROM")
    assert run_flow(manifest, "--state-key", "other").summary["rowsRead"] == 50
    assert sink_db.rows("SELECT flow_id FROM adf_state") == [("other",)]


def test_declarative_steps_are_pushed_down_and_match_python_steps(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb, tmp_path: Path
) -> None:
    steps: list[dict[str, Any]] = [
        {"rename": {"id": "product_id", "name": "title"}},
        {"drop": ["sku"]},
        {"set": {"origin": "shop", "price": None}},
        {"select": ["product_id", "title", "price", "origin", "updated_at"]},
    ]
    (tmp_path / "identity_flow.py").write_text("def same(row):\n    return row\n")
    python = {"python": {"callable": "identity_flow:same", "path": str(tmp_path)}}
    pushed = flow_manifest(incremental(source_db), sink(sink_db, "pushed"), transform=steps)
    in_python = flow_manifest(
        incremental(source_db), sink(sink_db, "in_python"), transform=[python, *steps]
    )
    assert run_flow(pushed).exit_code == 0
    assert run_flow(in_python, "--state-key", "python").exit_code == 0

    rows = sink_db.rows("SELECT * FROM pushed ORDER BY product_id")
    assert rows == sink_db.rows("SELECT * FROM in_python ORDER BY product_id")
    assert rows[0][:4] == (1, "thing 1", None, "shop")
    assert [c[1] for c in sink_db.rows("PRAGMA table_info(pushed)")] == [
        "product_id",
        "title",
        "price",
        "origin",
        "updated_at",
    ]


def test_set_now_is_the_run_start_time(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb
) -> None:
    manifest = flow_manifest(
        source(source_db, columns=["id"]), sink(sink_db), transform=[{"set": {"at": {"now": True}}}]
    )
    assert run_flow(manifest).exit_code == 0
    stamps = sink_db.rows("SELECT DISTINCT at FROM exports")
    assert len(stamps) == 1 and stamps[0][0].startswith("20")


def test_python_transform_can_drop_and_split_rows(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb, tmp_path: Path
) -> None:
    (tmp_path / "split_flow.py").write_text(
        "def split(row):\n"
        "    if row['id'] % 2:\n"
        "        return None\n"
        "    return [{'id': row['id'], 'part': p} for p in ('a', 'b')]\n"
    )
    manifest = flow_manifest(
        source(source_db),
        sink(sink_db),
        transform=[{"python": {"callable": "split_flow:split", "path": str(tmp_path)}}],
    )
    result = run_flow(manifest)
    assert (result.summary["rowsRead"], result.summary["rowsWritten"]) == (50, 50)
    assert result.summary["rowsSkipped"] == 25  # the dropped odd rows
    assert sink_db.rows("SELECT id, part FROM exports ORDER BY id, part")[:2] == [
        (2, "a"),
        (2, "b"),
    ]


def test_transforms_path_env_lists_several_directories(
    run_flow: Run,
    source_db: SqliteDb,
    sink_db: SqliteDb,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = tmp_path / "cm-a", tmp_path / "cm-b"
    first.mkdir()
    second.mkdir()
    (second / "mounted_flow.py").write_text(
        "def upper(row):\n    return {'n': row['name'].upper()}\n"
    )
    monkeypatch.setenv("ADF_TRANSFORMS_PATH", f"{first}:{second}")
    manifest = flow_manifest(
        source(source_db, batchSize=100),
        sink(sink_db),
        transform=[{"python": {"callable": "mounted_flow:upper"}}],
    )
    assert run_flow(manifest).exit_code == 0
    assert sink_db.rows("SELECT n FROM exports LIMIT 1") == [("THING 1",)]


def test_query_source_reads_in_cursor_order(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb
) -> None:
    query = "SELECT id, price * 2 AS double_price, updated_at FROM products WHERE category = 'toys'"
    manifest = flow_manifest(
        {
            "url": {"value": source_db.url},
            "query": query,
            "cursor": {"column": "updated_at", "tieBreaker": "id"},
            "batchSize": 4,
        },
        sink(sink_db),
    )
    assert run_flow(manifest).summary["rowsRead"] == 17
    assert run_flow(manifest).summary["rowsRead"] == 0
    assert sink_db.rows("SELECT id, double_price FROM exports ORDER BY id")[0] == (1, 3.0)


def test_typed_schema_coerces_values(run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb) -> None:
    manifest = flow_manifest(source(source_db), sink(sink_db))
    manifest["spec"]["source"]["schema"] = {
        "columns": [
            {"name": "price", "type": "integer"},
            {"name": "updated_at", "type": "datetime", "nullable": False},
        ],
        "allowExtra": False,
    }
    source_db.execute("UPDATE products SET price = 7.0, updated_at = '2024-02-01T10:00:00'")
    assert run_flow(manifest).summary["rowsWritten"] == 50
    assert sink_db.rows("SELECT * FROM exports LIMIT 1") == [(7, "2024-02-01 10:00:00.000000")]


def test_secret_key_ref_urls_resolve_from_the_environment(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADF_SECRET_SHOP_DB_URL", source_db.url)
    manifest = flow_manifest(
        {"url": {"secretKeyRef": {"name": "shop-db", "key": "url"}}, "table": "products"},
        sink(sink_db),
    )
    result = run_flow(manifest)
    assert result.exit_code == 0
    assert source_db.url not in result.stdout + result.stderr


def test_spec_env_and_stdin_read_the_same_manifest(
    run_adf: Run, source_db: SqliteDb, sink_db: SqliteDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = flow_manifest(source(source_db), sink(sink_db))
    monkeypatch.setenv("ADF_DATAFLOW", json.dumps(manifest))
    assert run_adf("run", "--spec-env", "ADF_DATAFLOW").summary["rowsWritten"] == 50
    as_yaml = "---\nkind: ConfigMap\nmetadata: {name: x}\n---\n" + json.dumps(manifest)
    assert run_adf("run", "-f", "-", stdin=as_yaml).summary["rowsWritten"] == 50
    assert sink_db.scalar("SELECT count(*) FROM exports") == 100


def test_without_a_tie_breaker_rows_at_batch_edges_are_never_skipped(
    run_flow: Run, tmp_path: Path, sink_db: SqliteDb
) -> None:
    db = SqliteDb(tmp_path / "ties.db")
    db.add_products([product(i, minute=i // 10) for i in range(1, 31)])  # groups of 10 ties
    query = "SELECT id, name, updated_at FROM products"  # a query: no primary key to lean on
    manifest = flow_manifest(
        {
            "url": {"value": db.url},
            "query": query,
            "cursor": {"column": "updated_at"},
            "batchSize": 4,
        },
        sink(sink_db, mode="upsert", keys=["id"]),
        maxRowsPerRun=7,
    )
    reads = [run_flow(manifest).summary["rowsRead"] for _ in range(4)]
    assert reads == [9, 10, 10, 1]  # whole groups (ids 1-9, 10-19, 20-29, 30), never cut
    db.add_products([product(i, minute=4) for i in range(31, 34)])
    last = run_flow(manifest)

    assert ids(sink_db) == list(range(1, 34))
    assert last.summary["rowsRead"] == 3
    assert run_flow(manifest).summary["rowsRead"] == 0


def test_runs_in_one_process_leave_one_heap_freeze_for_its_exit(
    run_flow: Run, source_db: SqliteDb, sink_db: SqliteDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`adf run` skips the interpreter's final collection; many runs leave one exit hook."""
    import gc
    from types import SimpleNamespace

    from adf_core import cli

    hooks: list[Callable[[], object]] = []
    fake = SimpleNamespace(
        register=hooks.append,
        unregister=lambda hook: hooks.__setitem__(slice(None), [h for h in hooks if h != hook]),
    )
    monkeypatch.setattr(cli, "atexit", fake)

    first = run_flow(flow_manifest(source(source_db), sink(sink_db)))
    second = run_flow(flow_manifest(source(source_db), sink(sink_db)))

    assert (first.exit_code, second.exit_code) == (0, 0)
    assert hooks == [gc.freeze]
