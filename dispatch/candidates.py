"""The live index held in memory: every caregiver's position and status by H3 cell, and the
search for the nearest fresh, available caregivers around a home, with no server in the way.

It keeps what the Redis live index keeps of a caregiver for a search (her street and area
cells, fix time, position and status) and answers a search exactly as the Redis script does
(see ``adapters.storage.live``): the plan's steps are read in order until ``need`` are kept,
then one step more, keeping the nearest ``need`` (ties by id); an area cell wholly farther
than the ``need``-th kept is not read. Positions carry their unit vectors, so a distance is a
few multiplications.
"""

from __future__ import annotations

import math
from bisect import insort
from collections.abc import Iterable
from functools import lru_cache

import h3

from dispatch.model import Candidate
from dispatch.ranking import AREA_RESOLUTION, SearchStep
from geofence.geodesy import EARTH_RADIUS_M, haversine_m, unit_vector

AVAILABLE = "available"
LEVELS = ("street", "area")

# ts, lat, lon, then the position's unit vector x, y, z, then the status
Entry = tuple[float, float, float, float, float, float, str]
Cells = dict[str, dict[str, Entry]]  # cell -> caregiver -> her entry
_RAD = math.pi / 180


@lru_cache(maxsize=65_536)
def area_of(street_cell: str) -> str:
    """The area-level cell holding a street-level cell."""
    return str(h3.cell_to_parent(street_cell, AREA_RESOLUTION))


@lru_cache(maxsize=65_536)
def cell_reach(cell: str) -> tuple[float, float, float, float]:
    """An H3 cell's centre as a unit vector and a radius in metres around it holding the
    whole cell (the farthest vertex, plus 1 % and a metre: cells' edges bulge little at
    this size)."""
    lat, lon = h3.cell_to_latlng(cell)
    far = max(haversine_m(lat, lon, a, b) for a, b in h3.cell_to_boundary(cell))
    return (*unit_vector(lat, lon), far * 1.01 + 1.0)


def entry(ts: float, lat: float, lon: float, status: str) -> Entry:
    return (ts, lat, lon, *unit_vector(lat, lon), status)


class CandidateIndex:
    """Caregivers by agency and cell at both levels; changes are absolute (a caregiver's
    whole place, or her status), so applying one twice changes nothing."""

    def __init__(self) -> None:
        self._place: dict[str, tuple[str, str, str]] = {}  # caregiver -> agency, street, area
        self._cells: dict[str, dict[str, Cells]] = {level: {} for level in LEVELS}

    def __len__(self) -> int:
        return len(self._place)

    def put(
        self, caregiver_id: str, agency_id: str, street: str, ts: float, lat: float, lon: float,
        status: str,
    ) -> None:  # fmt: skip
        """She is at (lat, lon) in street cell ``street`` as of ``ts``, with ``status``."""
        e = entry(ts, lat, lon, status)
        old = self._place.get(caregiver_id)
        if old is not None and old[0] == agency_id and old[1] == street:  # the same cells
            self._cells["street"][agency_id][street][caregiver_id] = e
            self._cells["area"][agency_id][old[2]][caregiver_id] = e
            return
        place = (agency_id, street, area_of(street))
        if old is not None:
            self._leave(caregiver_id, old)
        if old is None or old[2] != place[2]:
            cell_reach(place[2])  # known before a search needs it
        self._place[caregiver_id] = place
        for level, cell in zip(LEVELS, place[1:], strict=True):
            self._cells[level].setdefault(agency_id, {}).setdefault(cell, {})[caregiver_id] = e

    def set_status(self, caregiver_id: str, status: str) -> None:
        """Her status in her entries; nothing for a caregiver with no position."""
        place = self._place.get(caregiver_id)
        if place is None:
            return
        for level, cell in zip(LEVELS, place[1:], strict=True):
            entries = self._cells[level][place[0]][cell]
            entries[caregiver_id] = (*entries[caregiver_id][:6], status)

    def entry_of(self, caregiver_id: str) -> Entry | None:
        place = self._place.get(caregiver_id)
        return None if place is None else self._cells["street"][place[0]][place[1]][caregiver_id]

    def _leave(self, caregiver_id: str, place: tuple[str, str, str]) -> None:
        agency_id = place[0]
        for level, cell in zip(LEVELS, place[1:], strict=True):
            by_cell = self._cells[level][agency_id]
            entries = by_cell[cell]
            del entries[caregiver_id]
            if not entries:
                del by_cell[cell]

    def nearest(
        self,
        agency_id: str,
        plan: Iterable[SearchStep],
        *,
        lat: float,
        lon: float,
        need: int,
        now: float,
        stale_after_s: float,
    ) -> list[Candidate]:
        """The nearest ``need`` fresh, available caregivers of the agency around (lat, lon),
        nearest first (ties by id; distances compared as chords, which order as distances)."""
        if need <= 0:
            return []
        search = _Search(lat, lon, need, now, stale_after_s)
        steps = list(plan)
        done = 0
        while done < len(steps) - 2 and search.count < need:  # whole steps, while they decide
            self._read_step(search, agency_id, steps[done])
            done += 1
        last = min(done + 1, len(steps)) if search.count >= need else len(steps)
        for step in steps[done:last]:  # the steps within reach, cell by cell
            by_cell = self._cells[step.level].get(agency_id, {})
            area = step.level == "area"
            for cell in step.cells:
                entries = by_cell.get(cell)
                if entries and not (area and search.beyond_cell(cell)):
                    search.read(entries)
        return [Candidate(cid, agency_id, e[1], e[2], e[0], e[6]) for _d, cid, e in search.kept]

    def _read_step(self, search: _Search, agency_id: str, step: SearchStep) -> None:
        by_cell = self._cells[step.level].get(agency_id, {})
        for cell in step.cells:
            entries = by_cell.get(cell)
            if entries:
                search.read(entries)


class _Search:
    """One search's state: the nearest kept so far (squared chord to home, id, entry; nearest
    first, at most ``need``), how many fresh and available were seen, and the ``need``-th's
    squared chord and distance in metres once ``need`` are kept."""

    def __init__(self, lat: float, lon: float, need: int, now: float, stale_after_s: float):
        self.home = unit_vector(lat, lon)
        self.hlat = lat * _RAD
        self.need, self.now, self.stale = need, now, stale_after_s
        self.kept: list[tuple[float, str, Entry]] = []
        self.seen: set[str] = set()
        self.count = 0
        self.bound = math.inf  # squared chord
        self.bound_m = math.inf

    def read(self, entries: dict[str, Entry]) -> None:
        seen, kept, need, now, stale = self.seen, self.kept, self.need, self.now, self.stale
        hx, hy, hz = self.home
        for cid, e in entries.items():
            if cid in seen:
                continue
            seen.add(cid)
            if now - e[0] > stale or e[6] != AVAILABLE:
                continue
            self.count += 1
            if EARTH_RADIUS_M * abs(e[1] * _RAD - self.hlat) > self.bound_m + 0.001:
                continue  # no nearer than her difference in latitude
            dx, dy, dz = e[3] - hx, e[4] - hy, e[5] - hz
            c2 = dx * dx + dy * dy + dz * dz
            if c2 > self.bound or (c2 == self.bound and cid > kept[-1][1]):
                continue
            insort(kept, (c2, cid, e))
            if len(kept) > need:
                kept.pop()
            if len(kept) == need:
                self.bound = kept[-1][0]
                self.bound_m = _metres(self.bound)

    def beyond_cell(self, cell: str) -> bool:
        """The cell lies wholly farther than the ``need``-th kept."""
        if self.bound_m == math.inf:
            return False
        x, y, z, reach = cell_reach(cell)
        hx, hy, hz = self.home
        dx, dy, dz = x - hx, y - hy, z - hz
        return _metres(dx * dx + dy * dy + dz * dz) - reach > self.bound_m


def _metres(chord2: float) -> float:
    """The great-circle distance of a squared chord between unit vectors."""
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(chord2 / 4)))
