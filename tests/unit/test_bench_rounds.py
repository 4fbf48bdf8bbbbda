"""Which measurements a bench run takes, in what order within a round."""

from __future__ import annotations

from bench.suite import GROUPS, MEASUREMENTS, measurements_of


def test_every_group_needs_every_measurement_once() -> None:
    names = measurements_of(GROUPS)

    assert sorted(names) == sorted(MEASUREMENTS)


def test_an_engine_run_sits_next_to_its_baseline() -> None:
    assert measurements_of(["declarative"]) == ["adf_declarative", "pipe_declarative"]
    assert measurements_of(["sqlite"]) == ["adf_sqlite", "sqlite3"]


def test_upserts_into_empty_targets_come_before_upserts_into_the_targets_they_filled() -> None:
    names = measurements_of(["upsert"])

    assert names == ["adf_upsert_empty", "pipe_upsert_empty", "adf_upsert_full", "pipe_upsert_full"]


def test_every_other_round_runs_each_baseline_first() -> None:
    assert measurements_of(["upsert", "declarative"], baseline_first=True) == [
        "pipe_upsert_empty",
        "adf_upsert_empty",
        "pipe_upsert_full",
        "adf_upsert_full",
        "pipe_declarative",
        "adf_declarative",
    ]
    assert sorted(measurements_of(GROUPS, baseline_first=True)) == sorted(MEASUREMENTS)


def test_the_memory_figure_alone_needs_one_engine_run() -> None:
    assert measurements_of(["rss"]) == ["adf_append"]
