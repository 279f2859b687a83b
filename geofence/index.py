"""``FenceIndex``: which fences contain each of many fixes, answered in bulk.

Two steps, both vectorised: the H3 prefilter (each fence is listed under the cells that cover it
with a margin, see ``cover``) gives candidate (fix, fence) pairs; the exact test keeps the pairs
whose fix is inside (numpy haversine for circles, ``shapely.contains_xy`` on prepared polygons).
Results agree with ``Fence.contains`` fence by fence.

Fences change while the index serves: ``upsert`` and ``remove`` touch only that fence. A change
goes into a small second table (and a removed or replaced fence's slot is marked dead); when
``compact_after`` fences have changed the tables are merged, in one numpy pass.

Two layers of cells: the *core* (cells a fix inside the fence can fall in), which is all that
``evaluate`` reads, and the *rim* (cells only within ``reach_m`` of it), which ``classify`` and
``crossing`` read as well.

``classify`` answers the accuracy-aware question (inside, outside, or straddling the edge for a
fix with an accuracy radius) for accuracies up to ``reach_m``; ``crossing`` names the fences a
straight segment between two fixes meets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import shapely

from geofence.columns import CIRCLE, DEAD, POLYGON, Columns
from geofence.cover import DEFAULT_RESOLUTION, cells_of, coverings
from geofence.fences import Fence, Relation
from geofence.geodesy import (
    METRES_PER_DEGREE_LAT,
    FloatArray,
    distance_of_terms,
    haversine_terms,
    unit_vectors,
)
from geofence.table import Candidates, IntArray, Layer, merge

DEFAULT_REACH_M = 50.0
"""Accuracy radii up to this are classified exactly (coarser fixes are dropped upstream)."""

ObjectArray = npt.NDArray[np.object_]


class Hits(NamedTuple):
    """Flat results: fix ``fix[i]`` is inside fence ``fence_id[i]``; sorted by fix."""

    fix: IntArray
    fence_id: ObjectArray


class Relations(NamedTuple):
    """Flat results for the fences a fix is not wholly outside of; sorted by fix."""

    fix: IntArray
    fence_id: ObjectArray
    relation: npt.NDArray[np.int8]


class FenceIndex:
    """Tens of thousands of fences; which of them contain each fix."""

    def __init__(
        self,
        fences: Iterable[Fence] = (),
        *,
        resolution: int = DEFAULT_RESOLUTION,
        reach_m: float = DEFAULT_REACH_M,
        compact_after: int = 2048,
    ) -> None:
        if reach_m <= 0:
            raise ValueError("reach_m must be positive")
        self.resolution, self.reach_m, self.compact_after = resolution, reach_m, compact_after
        self._cols = Columns()
        self._slot_of: dict[str, int] = {}
        self._core, self._rim = Layer(), Layer()
        self._recent_fences = 0
        self.upsert_many(fences)
        self.compact()

    # ------------------------------------------------------------------ changes

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, fence_id: object) -> bool:
        return fence_id in self._slot_of

    def get(self, fence_id: str) -> Fence | None:
        slot = self._slot_of.get(fence_id)
        return None if slot is None else self._cols["fence"][slot]

    def upsert(self, fence: Fence) -> None:
        """Add a fence, or replace the one with its id."""
        self.upsert_many([fence])

    def upsert_many(self, fences: Iterable[Fence]) -> None:
        batch = list({f.fence_id: f for f in fences}.values())
        if not batch:
            return
        for fence in batch:
            self.remove(fence.fence_id)
        slots = np.array([self._add_slot(f) for f in batch], dtype=np.int64)
        cover = coverings(batch, self.resolution, self.reach_m)
        self._core.add(cover.cells[cover.core], slots[cover.owners[cover.core]])
        self._rim.add(cover.cells[~cover.core], slots[cover.owners[~cover.core]])
        self._recent_fences += len(batch)
        if self._recent_fences > max(self.compact_after, len(self) // 8):
            self.compact()

    def remove(self, fence_id: str) -> bool:
        """Forget a fence; False if there was none with that id."""
        slot = self._slot_of.pop(fence_id, None)
        if slot is not None:
            self._cols.kill(slot)
        return slot is not None

    def _add_slot(self, fence: Fence) -> int:
        slot = self._cols.append(fence)
        self._slot_of[fence.fence_id] = slot
        return slot

    def compact(self) -> None:
        """Merge recent changes into the main tables and drop dead slots."""
        alive = self._cols["kind"][: self._cols.size] != DEAD
        self._core.compact(alive)
        self._rim.compact(alive)
        self._cols.keep(alive)
        self._slot_of = {fence_id: i for i, fence_id in enumerate(self._cols["id"].tolist())}
        self._recent_fences = 0

    # ------------------------------------------------------------------ queries

    def evaluate(self, lats: FloatArray, lons: FloatArray) -> Hits:
        """Every (fix, fence) with the fix strictly inside the fence."""
        lats, lons = _floats(lats), _floats(lons)
        pairs = self._candidates(cells_of(lats, lons, self.resolution), rim=False)
        inside, _ = self._measure(pairs, lats, lons, distances=False)
        return Hits(pairs.fix[inside], self._cols["id"].take(pairs.slot[inside]))

    def evaluate_sets(self, lats: FloatArray, lons: FloatArray) -> list[set[str]]:
        """``evaluate`` as one set of fence ids per fix."""
        hits = self.evaluate(lats, lons)
        result: list[set[str]] = [set() for _ in range(len(lats))]
        for fix, fence_id in zip(hits.fix.tolist(), hits.fence_id.tolist(), strict=True):
            result[fix].add(fence_id)
        return result

    def fences_at(self, lat: float, lon: float) -> set[str]:
        """The fences one fix is inside."""
        return self.evaluate_sets(np.array([lat]), np.array([lon]))[0]

    def classify(
        self,
        lats: FloatArray,
        lons: FloatArray,
        accs: FloatArray,
        agencies: Sequence[str] | None = None,
    ) -> Relations:
        """Each fix's relation to the fences it is not wholly outside of; with ``agencies``
        (one per fix), to its own agency's fences only.

        A fix's accuracy circle (radius ``accs``, metres, capped at ``reach_m``) that reaches the
        fence's edge straddles it; otherwise the fix is wholly inside or wholly outside.
        """
        lats, lons = _floats(lats), _floats(lons)
        accs = np.minimum(_floats(accs), self.reach_m)
        pairs = self._candidates(cells_of(lats, lons, self.resolution), rim=True)
        if agencies is not None:
            pairs = self._own(pairs, agencies)
        inside, distance = self._measure(pairs, lats, lons, distances=True)
        relation = np.where(inside, Relation.INSIDE, Relation.OUTSIDE).astype(np.int8)
        relation[distance < accs[pairs.fix]] = Relation.STRADDLES
        keep = relation != Relation.OUTSIDE
        return Relations(pairs.fix[keep], self._cols["id"].take(pairs.slot[keep]), relation[keep])

    def relations_at(self, lat: float, lon: float, acc_m: float) -> dict[str, Relation]:
        """``classify`` for one fix: fence id -> relation, for fences it is not outside of."""
        found = self.classify(np.array([lat]), np.array([lon]), np.array([acc_m]))
        pairs = zip(found.fence_id.tolist(), found.relation.tolist(), strict=True)
        return {fence_id: Relation(r) for fence_id, r in pairs}

    def crossing(self, lat0: float, lon0: float, lat1: float, lon1: float) -> set[str]:
        """The fences the straight segment between two fixes meets (see :meth:`crossings`)."""
        return self.crossings([(lat0, lon0, lat1, lon1)])[0]

    def crossings(
        self,
        segments: Sequence[tuple[float, float, float, float]],
        agencies: Sequence[str] | None = None,
    ) -> list[set[str]]:
        """The fences each straight segment (lat0, lon0, lat1, lon1) meets, all in one pass;
        with ``agencies`` (one per segment), its own agency's fences only.

        A segment is sampled at most ``2 * reach_m`` apart, so each of its points is within
        ``reach_m`` of a sample, and every fence it meets is listed under some sample's cell;
        the candidates are then tested exactly: circles all at once, in the fence's local
        frame as ``Fence.crosses`` does, polygons one by one with shapely.
        """
        out: list[set[str]] = [set() for _ in segments]
        if not segments:
            return out
        ends = np.asarray(segments, dtype=np.float64).reshape(-1, 4)
        seg, slot = self._segment_candidates(ends)
        if agencies is not None:
            seg, slot = self._own(Candidates(seg, slot), agencies)
        kind = self._cols["kind"].take(slot)
        circles = np.flatnonzero(kind == CIRCLE)
        met = circles[self._circles_met(ends, seg.take(circles), slot.take(circles))]
        ids = self._cols["id"].take(slot.take(met))
        for i, fence_id in zip(seg.take(met).tolist(), ids.tolist(), strict=True):
            out[i].add(fence_id)
        fences = self._cols["fence"]
        polygons = np.flatnonzero(kind == POLYGON)
        for i, s in zip(seg.take(polygons).tolist(), slot.take(polygons).tolist(), strict=True):
            fence = fences[s]
            if fence is not None and fence.crosses(*segments[i]):
                out[i].add(fence.fence_id)
        return out

    def _segment_candidates(self, ends: FloatArray) -> tuple[IntArray, IntArray]:
        """Distinct (segment, fence slot) pairs whose fence is listed under a sample's cell."""
        seg, t = _samples(ends, 2 * self.reach_m)
        lats = ends[seg, 0] + (ends[seg, 2] - ends[seg, 0]) * t
        lons = ends[seg, 1] + (ends[seg, 3] - ends[seg, 1]) * t
        found = self._candidates(cells_of(lats, lons, self.resolution), rim=True)
        slots = max(1, self._cols.size)
        pairs = np.unique(seg.take(found.fix) * slots + found.slot)
        return pairs // slots, pairs % slots

    def _circles_met(
        self, ends: FloatArray, seg: IntArray, slot: IntArray
    ) -> npt.NDArray[np.bool_]:
        """Whether each segment meets its circle: the plane distance from the centre to the
        segment in the fence's local frame, in the operations of ``Fence.crosses``."""
        lat0, lon0, cos0 = self._cols["anchor"].take(slot, axis=0).T
        scale = METRES_PER_DEGREE_LAT * cos0
        e = ends.take(seg, axis=0)
        ax, ay = (e[:, 1] - lon0) * scale, (e[:, 0] - lat0) * METRES_PER_DEGREE_LAT
        bx, by = (e[:, 3] - lon0) * scale, (e[:, 2] - lat0) * METRES_PER_DEGREE_LAT
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        with np.errstate(divide="ignore", invalid="ignore"):
            along = np.clip(-(ax * dx + ay * dy) / length2, 0.0, 1.0)
        t = np.where(length2 == 0, 0.0, along)
        ex, ey = ax + t * dx, ay + t * dy
        radius = self._cols["radius"].take(slot)
        met: npt.NDArray[np.bool_] = ex * ex + ey * ey < radius * radius
        return met

    def _own(self, pairs: Candidates, agencies: Sequence[str]) -> Candidates:
        """The pairs whose fence belongs to the agency of their fix (or segment)."""
        wanted = np.asarray(agencies, dtype=object).take(pairs.fix)
        mine = np.flatnonzero(self._cols["agency"].take(pairs.slot) == wanted)
        return Candidates(pairs.fix.take(mine), pairs.slot.take(mine))

    def _candidates(self, cells: npt.NDArray[np.uint64], *, rim: bool) -> Candidates:
        """The fences listed under each cell; with ``rim``, also those within reach of it."""
        core = self._core.lookup(cells)
        return merge(core, self._rim.lookup(cells)) if rim else core

    def _measure(
        self, pairs: Candidates, lats: FloatArray, lons: FloatArray, *, distances: bool
    ) -> tuple[npt.NDArray[np.bool_], FloatArray]:
        """For each pair: is the fix inside, and (if asked) how far from the edge (m).

        (``take`` rather than fancy indexing throughout: several times faster for gathers.)
        """
        kind = self._cols["kind"].take(pairs.slot)
        inside = np.zeros(len(kind), dtype=bool)
        distance = np.full(len(kind), np.inf)
        for code, test in ((CIRCLE, self._circles), (POLYGON, self._polygons)):
            which = np.flatnonzero(kind == code)
            if len(which) == len(kind):  # all of one kind: no need to split
                return test(pairs.fix, pairs.slot, lats, lons, distances)
            if len(which):
                fix, slot = pairs.fix.take(which), pairs.slot.take(which)
                inside[which], distance[which] = test(fix, slot, lats, lons, distances)
        return inside, distance

    def _circles(
        self, fix: IntArray, slot: IntArray, lats: FloatArray, lons: FloatArray, dist: bool
    ) -> tuple[npt.NDArray[np.bool_], FloatArray]:
        fixes = unit_vectors(lats, lons).take(fix, axis=0)
        h = haversine_terms(fixes, self._cols["unit"].take(slot, axis=0))
        inside = h < self._cols["threshold"].take(slot)
        if not dist:
            return inside, np.full(len(fix), np.inf)
        return inside, np.abs(distance_of_terms(h) - self._cols["radius"].take(slot))

    def _polygons(
        self, fix: IntArray, slot: IntArray, lats: FloatArray, lons: FloatArray, dist: bool
    ) -> tuple[npt.NDArray[np.bool_], FloatArray]:
        x, y = lons.take(fix), lats.take(fix)
        inside = np.zeros(len(fix), dtype=bool)
        box = self._cols["box"].take(slot, axis=0)
        maybe = np.flatnonzero(
            (box[:, 0] <= x) & (x <= box[:, 2]) & (box[:, 1] <= y) & (y <= box[:, 3])
        )
        geometry = self._cols["geometry"].take(slot.take(maybe))
        inside[maybe] = shapely.contains_xy(geometry, x.take(maybe), y.take(maybe))
        if not dist:
            return inside, np.full(len(fix), np.inf)
        lat0, lon0, cos0 = self._cols["anchor"].take(slot, axis=0).T
        xs = (x - lon0) * (METRES_PER_DEGREE_LAT * cos0)
        ys = (y - lat0) * METRES_PER_DEGREE_LAT
        outline = self._cols["outline"].take(slot)
        return inside, np.asarray(shapely.distance(outline, shapely.points(xs, ys)))


def _floats(values: FloatArray | Iterable[float]) -> FloatArray:
    return np.ascontiguousarray(values, dtype=np.float64)


def _samples(ends: FloatArray, spacing_m: float) -> tuple[IntArray, FloatArray]:
    """Sample points along segments (rows of lat0, lon0, lat1, lon1), at most ``spacing_m``
    apart, both ends included: each sample's segment, and its place along it from 0 to 1."""
    starts, stops = unit_vectors(ends[:, 0], ends[:, 1]), unit_vectors(ends[:, 2], ends[:, 3])
    metres = distance_of_terms(haversine_terms(starts, stops))
    steps = np.maximum(1, np.ceil(metres / spacing_m)).astype(np.int64)
    seg = np.repeat(np.arange(len(ends)), steps + 1)
    first = np.repeat(np.cumsum(steps + 1) - (steps + 1), steps + 1)
    t = (np.arange(len(seg)) - first) / steps[seg]
    return seg, t
