"""The spec models: cross-field rules and error messages that name the field path."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from adf_core.errors import SpecError
from adf_core.spec import (
    ValueSource,
    load_dataflow,
    parse_duration,
    secret_env_name,
)

MANIFEST: dict[str, Any] = {
    "apiVersion": "activedataflow.io/v1alpha1",
    "kind": "DataFlow",
    "metadata": {"name": "product-sync", "namespace": "shop"},
    "spec": {
        "source": {
            "sql": {
                "url": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
                "table": "products",
                "cursor": {"column": "updated_at", "tieBreaker": "id"},
            }
        },
        "transform": [{"rename": {"id": "product_id"}}, {"set": {"at": {"now": True}}}],
        "sink": {
            "sql": {
                "url": {"value": "sqlite:///sink.db"},
                "table": "product_exports",
                "mode": "upsert",
                "keys": ["product_id"],
            }
        },
        "schedule": {"cron": "30 2 * * *", "timeZone": "Europe/Berlin"},
    },
}


def with_change(path: str, value: Any) -> dict[str, Any]:
    """A copy of MANIFEST with the dotted path set to value (None deletes it)."""
    doc = copy.deepcopy(MANIFEST)
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return doc


def test_valid_manifest_loads_with_defaults() -> None:
    flow = load_dataflow(MANIFEST)
    assert flow.flow_id == "shop/product-sync"
    assert flow.spec.concurrency_policy == "Forbid"
    assert flow.spec.source.sql is not None and flow.spec.source.sql.batch_size == 10_000
    assert flow.spec.run_template.backoff_limit == 2


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("spec.sink.sql.keys", None, "spec.sink.sql.keys: required when mode is upsert"),
        ("spec.source.sql.query", "SELECT 1", "spec.source.sql: set exactly one of table or query"),
        ("spec.schedule.every", "5m", "spec.schedule: set exactly one of every or cron"),
        ("spec.schedule.timeZone", "Mars/Olympus", "spec.schedule.timeZone: unknown time zone"),
        ("spec.source.sql.batchSize", "many", "spec.source.sql.batchSize: Input should be"),
        ("spec.sinkk", {}, "spec.sinkk: Extra inputs are not permitted"),
        ("spec.onError", "ignore", "spec.onError: Input should be"),
        (
            "spec.transform",
            [{"rename": {"a": "b"}, "drop": ["c"]}],
            "spec.transform.0: set exactly",
        ),
        ("spec.schedule", {"every": "30s"}, "spec.schedule.every: must be at least 1m"),
    ],
)
def test_bad_manifest_names_the_field(path: str, value: Any, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_dataflow(with_change(path, value))
    assert expected in str(caught.value)


def test_error_message_never_echoes_values() -> None:
    doc = with_change(
        "spec.source.sql.url", {"value": 42, "secretKeyRef": {"name": "a", "key": "b"}}
    )
    doc["spec"]["source"]["sql"]["url"]["value"] = "postgresql://u:hunter2@db/x"
    with pytest.raises(SpecError) as caught:
        load_dataflow(doc)
    assert "hunter2" not in str(caught.value)
    assert "spec.source.sql.url: set exactly one of value or secretKeyRef" in str(caught.value)


def test_secret_resolves_from_its_environment_variable() -> None:
    source = ValueSource.model_validate({"secretKeyRef": {"name": "shop-db", "key": "url"}})
    assert secret_env_name("shop-db", "url") == "ADF_SECRET_SHOP_DB_URL"
    assert source.resolve({"ADF_SECRET_SHOP_DB_URL": "sqlite://"}) == "sqlite://"
    with pytest.raises(SpecError, match="ADF_SECRET_SHOP_DB_URL"):
        source.resolve({})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("1h30m", 5400), ("1d", 86400), ("250ms", 0.25)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_parse_duration_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("10 minutes")
