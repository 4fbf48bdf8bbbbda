"""Python steps of the worker-process tests (loaded by path, like a user's module)."""

from __future__ import annotations

import os
import signal
from typing import Any

FAIL_ID = 600


def tag_pid(row: dict[str, Any]) -> dict[str, Any]:
    """Upper-case the SKU and record which process ran the step (in `category`)."""
    row["sku"] = row["sku"].upper()
    row["category"] = f"pid-{os.getpid()}"
    return row


def refuse_one(row: dict[str, Any]) -> dict[str, Any]:
    """Upper-case the SKU; the row with id FAIL_ID raises."""
    if row["id"] == FAIL_ID:
        raise ValueError(f"refused product {row['id']}")
    row["sku"] = row["sku"].upper()
    return row


def die_at_one(row: dict[str, Any]) -> dict[str, Any]:
    """The process that transforms the row with id FAIL_ID is killed (a crashed worker)."""
    if row["id"] == FAIL_ID:
        os.kill(os.getpid(), signal.SIGKILL)
    return row


def twice(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Two rows with the row's key: a stale one, then the exported one (the last must win)."""
    stale = {**row, "name": "stale"}
    row["sku"] = row["sku"].upper()
    return [stale, row]


def float_price(row: dict[str, Any]) -> dict[str, Any]:
    """Upper-case the SKU; the price becomes a float (no binary COPY into numeric: COPY text)."""
    row["sku"] = row["sku"].upper()
    row["price"] = float(row["price"])
    return row


def drop_odd(row: dict[str, Any]) -> dict[str, Any] | None:
    """Keep the rows with an even id (exported); drop the others."""
    if row["id"] % 2:
        return None
    row["sku"] = row["sku"].upper()
    return row


def fold_keys(row: dict[str, Any]) -> dict[str, Any]:
    """Upper-case the SKU; ids wrap at 1,000, so rows far apart in a batch share a key."""
    row["id"] = (row["id"] - 1) % 1000 + 1
    row["sku"] = row["sku"].upper()
    return row
