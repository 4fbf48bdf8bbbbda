"""The ``adf`` console script: the command line, imported with the cyclic GC paused."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while the block runs, and none over what it made afterwards.

    Importing the engine (typer, pydantic, SQLAlchemy, psycopg) creates a few hundred thousand
    objects and no garbage cycles: the collector's passes over them are pure cost, a fifth of
    the imports of ``adf run`` (0.36 instead of 0.44 s, measured), which every run pod pays.
    Merely postponed, the cost would come back at the first allocation after the pause: every
    object made during it is still in the youngest generation, and that collection scans them
    all (46-54 ms after the imports of ``adf run``, measured). So they are frozen (gc.freeze)
    first: modules live as long as the process, and reference counting still frees the rest.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.enable()


def main() -> None:
    """``adf``: import the command line without the collector, then run it with it."""
    with gc_paused():
        from adf_core.cli import app
    app()
