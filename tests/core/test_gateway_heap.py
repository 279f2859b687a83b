"""The gateway process's heap kept frozen (ws_gateway.heap)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from ws_gateway.heap import keep_frozen


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


async def _frozen_beyond(keeper: asyncio.Task[None], count: int) -> int:
    """The frozen objects' count once the keeper has frozen more than ``count``."""
    for _ in range(100):
        await asyncio.sleep(0)
        if gc.get_freeze_count() > count:
            return gc.get_freeze_count()
    keeper.cancel()
    raise AssertionError(f"never more than {count} objects frozen")


async def test_what_comes_later_is_frozen_in_turn(restored_gc: None) -> None:
    keeper = asyncio.create_task(keep_frozen(freeze_s=0, sweep_s=3600))
    first = await _frozen_beyond(keeper, 0)
    later = [[n] for n in range(1000)]  # lists are tracked by the collector; ints are not
    assert await _frozen_beyond(keeper, first + len(later)) and gc.is_tracked(later)
    keeper.cancel()


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


async def _cycle_after_a_turn(sweep_s: float) -> weakref.ref[Node]:
    """A cycle dropped while a keeper runs, once the keeper has frozen it (or swept it)."""
    keeper = asyncio.create_task(keep_frozen(freeze_s=0, sweep_s=sweep_s))
    first = await _frozen_beyond(keeper, 0)
    node = Node()
    ref = weakref.ref(node)
    del node
    for _ in range(3):  # the keeper's turn (it sleeps 0 s: one yield) comes within these
        await asyncio.sleep(0)
    assert gc.get_freeze_count() >= first
    keeper.cancel()
    return ref


async def test_frozen_cycles_wait_for_the_sweep(restored_gc: None) -> None:
    kept = await _cycle_after_a_turn(sweep_s=3600)
    gc.collect()
    assert kept() is not None  # frozen: the collector leaves it alone
    gc.unfreeze()
    swept = await _cycle_after_a_turn(sweep_s=0)  # each turn a sweep
    assert swept() is None
