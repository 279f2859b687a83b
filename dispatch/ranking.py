"""Who may be offered an incident, and in what order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import h3

from dispatch.eta import TravelModel, haversine_m
from dispatch.model import Candidate, Ranked

STREET_RESOLUTION = 8  # cells of ~0.74 km², edge ~0.53 km
AREA_RESOLUTION = 6  # cells of ~36 km², edge ~3.7 km
STREET_DISK_K = 2  # the street-level disk around home reaches at least ~0.9 km


@dataclass(frozen=True, slots=True)
class SearchStep:
    """One read of the live index: these cells at this level (``street`` or ``area``)."""

    level: str
    cells: Sequence[str]


def search_plan(lat: float, lon: float, area_rings: int) -> Iterator[SearchStep]:
    """Where to look for caregivers around a home, nearest first, in a few steps.

    First the street-level disk around the home cell, then the area-level cell and its
    neighbours, then the further area rings up to ``area_rings`` (each area ring adds
    roughly 6 km of radius). The plan depends on the home's street cell alone, so homes in
    one cell share it (computed once, kept for the next search there).
    """
    street = h3.latlng_to_cell(lat, lon, STREET_RESOLUTION)
    return iter(_cell_plan(street, area_rings))


@lru_cache(maxsize=16_384)
def _cell_plan(street: str, area_rings: int) -> tuple[SearchStep, ...]:
    disk = SearchStep("street", tuple(h3.grid_disk(street, STREET_DISK_K)))
    return (disk, *_area_steps(h3.cell_to_parent(street, AREA_RESOLUTION), area_rings))


@lru_cache(maxsize=4096)
def _area_steps(area: str, area_rings: int) -> tuple[SearchStep, ...]:
    near = SearchStep("area", tuple(h3.grid_disk(area, 1)))
    if area_rings <= 1:
        return (near,)
    far = tuple(c for k in range(2, area_rings + 1) for c in h3.grid_ring(area, k))
    return near, SearchStep("area", far)


def is_eligible(c: Candidate, agency_id: str, now: float, stale_after_s: float) -> bool:
    """Same agency, available, and a position fresh enough to trust."""
    return c.agency_id == agency_id and c.status == "available" and now - c.ts <= stale_after_s


def rank(
    candidates: Iterable[Candidate],
    *,
    agency_id: str,
    lat: float,
    lon: float,
    model: TravelModel,
    now: float,
    stale_after_s: float,
) -> list[Ranked]:
    """Eligible candidates, nearest ETA first (ties by id, so the order is stable)."""
    ranked = []
    for c in candidates:
        if is_eligible(c, agency_id, now, stale_after_s):
            d = haversine_m(lat, lon, c.lat, c.lon)
            ranked.append(Ranked(c, d, model.eta_s(d)))
    return sorted(ranked, key=lambda r: (r.eta_s, r.candidate.caregiver_id))
