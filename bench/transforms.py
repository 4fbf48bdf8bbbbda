"""The small per-row Python transform of the benchmark (and its SQL twin for the pipes)."""

from __future__ import annotations

from typing import Any

SOURCE_SELECT = "SELECT id, name, sku, price, category, active, updated_at FROM products"
# What the SQL baselines compute instead of calling to_export.
SQL_SELECT = "SELECT id, name, upper(sku) AS sku, price, category, active, updated_at FROM products"


def to_export(row: dict[str, Any]) -> dict[str, Any]:
    """Normalise the SKU, as a typical export step would."""
    row["sku"] = row["sku"].upper()
    return row
