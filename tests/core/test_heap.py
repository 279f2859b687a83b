"""The hot services' collector settings (kernel.heap)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from kernel import heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_freezes_what_exists_and_widens_the_young_generation(restored_gc: None) -> None:
    older = gc.get_threshold()[1:]
    survivor = [object()]
    heap.settle()
    assert gc.get_freeze_count() > len(survivor)
    assert gc.isenabled()  # cycles made later are still collected, only less often
    assert gc.get_threshold() == (heap.YOUNG_OBJECTS, *older)
