"""The prefilter's lookup table: H3 cell -> fence slots, as sorted arrays (CSR), read in bulk.

A ``CellTable`` is immutable; the index keeps a large one and a small one for recent changes,
and merges them now and then.
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
        found = self.keys[at] == cells
        begin = np.where(found, self.starts[at], 0)
        counts = np.where(found, self.starts[at + 1] - self.starts[at], 0)
        fix = np.repeat(np.arange(len(cells), dtype=np.int64), counts)
        # position of each pair within its fix's run, added to the run's start
        run_starts = np.cumsum(counts) - counts
        within = np.arange(len(fix), dtype=np.int64) - np.repeat(run_starts, counts)
        return Candidates(fix, self.slots[np.repeat(begin, counts) + within])
