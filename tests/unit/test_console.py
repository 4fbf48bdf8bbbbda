"""The console script's start-up: the cyclic collector and the objects the imports make."""

from __future__ import annotations

import gc

from adf_core.console import gc_paused


def test_what_the_pause_made_is_frozen_and_collection_is_back_on_after_it() -> None:
    """So the first collection after the imports does not scan every object they made."""
    gc.unfreeze()
    try:
        with gc_paused():
            assert not gc.isenabled()
            made = [[] for _ in range(1000)]
        assert gc.isenabled()
        assert gc.get_freeze_count() >= len(made)
    finally:
        gc.unfreeze()
