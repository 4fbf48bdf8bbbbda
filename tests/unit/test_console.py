"""The console script's start-up: the cyclic collector and the objects the imports make."""

from __future__ import annotations

import gc

import pytest

from adf_core.console import gc_paused


@pytest.mark.parametrize("freeze", [True, False])
def test_collection_is_back_on_after_the_pause_and_what_it_made_frozen_if_asked(
    freeze: bool,
) -> None:
    """Frozen, the first collection after the imports does not scan every object they made."""
    gc.unfreeze()
    try:
        with gc_paused(freeze=freeze):
            assert not gc.isenabled()
            made = [[] for _ in range(1000)]
        assert gc.isenabled()
        assert (gc.get_freeze_count() >= len(made)) is freeze
    finally:
        gc.unfreeze()
