"""Python transforms that the PostgreSQL tests load through a flow's `python` step."""

from __future__ import annotations

import os
import time
from typing import Any

# Seconds to spend per row, so that a test can kill a run while it is in the middle of a batch.
ROW_DELAY = float(os.environ.get("ADF_TEST_ROW_DELAY", "0"))


def to_export(row: dict[str, Any]) -> dict[str, Any]:
    """Upper-case the SKU (the expected rows apply the same change)."""
    if ROW_DELAY:
        time.sleep(ROW_DELAY)
    row["sku"] = row["sku"].upper()
    return row


def refuse_hundreds(row: dict[str, Any]) -> dict[str, Any]:
    """to_export, but every id divisible by 100 raises (for the onError policies)."""
    if row["id"] % 100 == 0:
        raise ValueError(f"refused product {row['id']}")
    return to_export(row)
