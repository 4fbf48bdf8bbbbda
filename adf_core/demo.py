"""`make demo`: the example flow on SQLite, end to end through the real `adf run`.

Creates ``.demo/shop.db`` with sample products, runs ``examples/product-sync-local.yaml`` twice
(the second run, after a few products changed, reads only those: the watermark in ``adf_state``
of ``.demo/warehouse.db``), then prints each run's summary and the first sink rows.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    create_engine,
    insert,
    select,
    update,
)

DEMO_DIR = Path(".demo")
MANIFEST = Path("examples/product-sync-local.yaml")
CATEGORIES = ["books", "garden", "kitchen", "toys", "tools"]
console = Console()


def products_table(metadata: MetaData) -> Table:
    return Table(
        "products",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("name", Text, nullable=False),
        Column("sku", Text, nullable=False),
        Column("price", Numeric(10, 2)),
        Column("category", Text, nullable=False),
        Column("active", Boolean, nullable=False),
        Column("updated_at", DateTime, nullable=False),
    )


def create_shop(path: Path, rows: int = 300, seed: int = 7) -> None:
    """A fresh SQLite shop database; several products share an updated_at (cursor ties)."""
    rng = random.Random(seed)
    base = datetime(2024, 1, 1, tzinfo=UTC).replace(tzinfo=None)
    engine = create_engine(f"sqlite:///{path}")
    table = products_table(MetaData())
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(
            insert(table),
            [
                {
                    "id": i,
                    "name": f"  {rng.choice(['Red', 'Blue', 'Green'])} thing {i} ",
                    "sku": f"sku-{i:05d}",
                    "price": None if i % 37 == 0 else round(rng.uniform(1, 200), 2),
                    "category": rng.choice(CATEGORIES),
                    "active": i % 10 != 0,
                    "updated_at": base + timedelta(minutes=i // 3),
                }
                for i in range(1, rows + 1)
            ],
        )
    engine.dispose()


def touch_products(path: Path, ids: list[int]) -> None:
    engine = create_engine(f"sqlite:///{path}")
    table = products_table(MetaData())
    with engine.begin() as conn:
        newest = conn.execute(
            select(table.c.updated_at).order_by(table.c.updated_at.desc())
        ).scalar()
        assert newest is not None
        conn.execute(
            update(table)
            .where(table.c.id.in_(ids))
            .values(price=table.c.price + 1, updated_at=newest + timedelta(minutes=5))
        )
    engine.dispose()


def adf_command() -> str:
    local = Path(sys.executable).with_name("adf")
    return str(local) if local.exists() else shutil.which("adf") or "adf"


def run_flow() -> dict[str, object]:
    """One `adf run` of the example manifest; its JSON summary (exits on failure)."""
    proc = subprocess.run(
        [adf_command(), "run", "-f", str(MANIFEST), "--output", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        console.print(proc.stdout, proc.stderr, markup=False)
        raise SystemExit(proc.returncode)
    summary: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return summary


def show_summaries(runs: dict[str, dict[str, object]]) -> None:
    table = RichTable(title="run summaries (adf run --output json)")
    table.add_column("field")
    for title in runs:
        table.add_column(title)
    for key in next(iter(runs.values())):
        table.add_row(key, *[str(summary[key]) for summary in runs.values()])
    console.print(table)


def show_sink(path: Path, limit: int = 8) -> None:
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        result = conn.exec_driver_sql(
            f"SELECT * FROM product_exports ORDER BY product_id LIMIT {limit}"
        )
        table = RichTable(title=f"first {limit} rows of product_exports in {path}")
        names = result.keys()
        for name in names:
            table.add_column(name)
        for row in result:
            table.add_row(*[str(v) for v in row])
        total = conn.exec_driver_sql("SELECT count(*) FROM product_exports").scalar()
    engine.dispose()
    console.print(table)
    console.print(f"{total} rows in product_exports")


def main() -> None:
    DEMO_DIR.mkdir(exist_ok=True)
    for name in ("shop.db", "warehouse.db"):
        (DEMO_DIR / name).unlink(missing_ok=True)
    create_shop(DEMO_DIR / "shop.db")
    console.print(f"created {DEMO_DIR / 'shop.db'} with 300 products; running {MANIFEST}")
    first = run_flow()
    touch_products(DEMO_DIR / "shop.db", [3, 4, 5])
    second = run_flow()
    show_summaries({"first run": first, "after 3 products changed": second})
    show_sink(DEMO_DIR / "warehouse.db")


if __name__ == "__main__":
    main()
