"""Bodies as the API server returns them, for the operator's unit tests."""

from __future__ import annotations

from typing import Any


def flow_body(**spec_overrides: Any) -> dict[str, Any]:
    """A DataFlow as the API server returns it (uid, generation, timestamps)."""
    spec: dict[str, Any] = {
        "source": {
            "sql": {
                "url": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
                "table": "products",
                "cursor": {"column": "updated_at", "tieBreaker": "id"},
            }
        },
        "transform": [
            {"rename": {"id": "product_id"}},
            {"python": {"callable": "shop_flows:to_export", "configMap": "shop-flows"}},
        ],
        "sink": {
            "sql": {
                "url": {"secretKeyRef": {"name": "warehouse-db", "key": "url"}},
                "table": "product_exports",
                "mode": "upsert",
                "keys": ["product_id"],
            }
        },
        "schedule": {"every": "10m"},
        "concurrencyPolicy": "Forbid",
    }
    spec.update(spec_overrides)
    return {
        "apiVersion": "activedataflow.io/v1alpha1",
        "kind": "DataFlow",
        "metadata": {
            "name": "product-sync",
            "namespace": "shop",
            "uid": "flow-uid",
            "generation": 2,
            "creationTimestamp": "2026-11-27T09:00:00Z",
        },
        "spec": spec,
    }
