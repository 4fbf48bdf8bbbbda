"""Example python transform for examples/product-sync-local.yaml.

A transform receives one row as a dict and returns a dict, a list of dicts, or None to drop it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

VAT = Decimal("0.19")


def to_export(row: dict[str, Any]) -> dict[str, Any] | None:
    """Price with VAT in cents, an upper-case SKU; products without a price are not exported."""
    if row["price"] is None:
        return None
    price = Decimal(str(row["price"]))
    return {
        "product_id": row["product_id"],
        "name": row["name"].strip(),
        "sku": row["sku"].upper(),
        "category": row["category"],
        "gross_cents": int((price * (1 + VAT) * 100).to_integral_value()),
        "updated_at": row["updated_at"],
    }
