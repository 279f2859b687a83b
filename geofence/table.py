"""The prefilter's lookup tables: H3 cell -> fence slots, as sorted arrays (CSR), read in bulk.

A ``CellTable`` is immutable. A ``Layer`` is a large table and a small one of recent
additions, read as one and merged now and then (``compact``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

CellArray = npt.NDArray[np.uint64]
IntArray = npt.NDArray[np.int64]


class Candidates(NamedTuple):
    """Flat (fix, slot) pairs: fix ``fix[i]`` may be inside the fence in slot ``slot[i]``."""

    fix: IntArray
    slot: IntArray


class CellTable:
    """Fence slots per cell: ``slots[starts[i]:starts[i + 1]]`` are listed under ``keys[i]``."""

    def __init__(self, cells: CellArray, slots: IntArray) -> None:
        order = np.argsort(cells, kind="stable")
        cells, self.slots = cells[order], slots[order].astype(np.int64)
        self.keys, first = np.unique(cells, return_index=True)
        self.starts = np.append(first, len(cells)).astype(np.int64)

    @classmethod
    def empty(cls) -> CellTable:
        return cls(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        """The number of (cell, slot) entries."""
        return len(self.slots)

    def entries(self) -> tuple[CellArray, IntArray]:
        """Every (cell, slot) entry, flat: what the table was built from."""
        counts = np.diff(self.starts)
        return np.repeat(self.keys, counts), self.slots

    def lookup(self, cells: CellArray) -> Candidates:
        """The slots listed under each fix's cell, flat and in fix order."""
        if len(self.keys) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return Candidates(empty, empty)
        at = np.minimum(np.searchsorted(self.keys, cells), len(self.keys) - 1)
        found = self.keys.take(at) == cells
        begin = self.starts.take(at)
        counts = np.where(found, self.starts.take(at + 1) - begin, 0)
        fix = np.repeat(np.arange(len(cells), dtype=np.int64), counts)
        # position of each pair within its fix's run, added to the run's start
        run_starts = np.cumsum(counts) - counts
        within = np.arange(len(fix), dtype=np.int64) - np.repeat(run_starts, counts)
        return Candidates(fix, self.slots.take(np.repeat(begin, counts) + within))


def merge(a: Candidates, b: Candidates) -> Candidates:
    """Two sets of candidates as one, in fix order."""
    if len(b.fix) == 0:
        return a
    fix = np.concatenate([a.fix, b.fix])
    order = np.argsort(fix, kind="stable")
    return Candidates(fix.take(order), np.concatenate([a.slot, b.slot]).take(order))


class Layer:
    """A large ``CellTable`` and the entries added since it was built, read as one."""

    def __init__(self) -> None:
        self._main = CellTable.empty()
        self._recent: list[tuple[CellArray, IntArray]] = []
        self._recent_table: CellTable | None = None

    def __len__(self) -> int:
        return len(self._main) + sum(len(c) for c, _ in self._recent)

    def add(self, cells: CellArray, slots: IntArray) -> None:
        self._recent.append((cells, slots))
        self._recent_table = None

    def lookup(self, cells: CellArray) -> Candidates:
        found = self._main.lookup(cells)
        if not self._recent:
            return found
        if self._recent_table is None:
            self._recent_table = CellTable(
                np.concatenate([c for c, _ in self._recent]),
                np.concatenate([s for _, s in self._recent]),
            )
        return merge(found, self._recent_table.lookup(cells))

    def compact(self, alive: npt.NDArray[np.bool_]) -> None:
        """One table again, without the slots not ``alive``; the others renumbered in order."""
        cells, slots = self._main.entries()
        cells = np.concatenate([cells, *(c for c, _ in self._recent)])
        slots = np.concatenate([slots, *(s for _, s in self._recent)])
        kept = alive[slots]
        renumber = np.cumsum(alive) - 1
        self._main = CellTable(cells[kept], renumber[slots[kept]])
        self._recent, self._recent_table = [], None
