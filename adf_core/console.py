"""The ``adf`` console script: the command line, imported with the cyclic GC paused."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused(*, freeze: bool = False) -> Iterator[None]:
    """No cyclic garbage collection while the block runs; with ``freeze``, none ever over the
    objects alive at its end.

    Importing the engine (typer, pydantic, SQLAlchemy, psycopg) creates a few hundred thousand
    objects and no garbage cycles: the collector's passes over them are pure cost, a fifth of
    the imports of ``adf run`` (0.36 instead of 0.44 s, measured), which every run pod pays.
    Merely postponed, the cost comes back at the first allocation after the pause: every object
    made during it is still in the youngest generation, and that collection scans them all
    (21 ms of ``adf run``'s start, measured). ``freeze`` (gc.freeze) spares that: for the adf
    process itself, whose modules live as long as it does. Not for an in-process caller (the
    tests): frozen garbage cycles would never be collected.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if freeze:
                gc.freeze()
            gc.enable()


def main() -> None:
    """``adf``: import the command line without the collector, then run it with it."""
    with gc_paused(freeze=True):
        from adf_core.cli import app
    app()
