"""Who may be offered an incident, and in what order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import h3

from dispatch.eta import TravelModel, haversine_m
from dispatch.model import Candidate, Ranked

SEARCH_RESOLUTION = 8


def search_rings(lat: float, lon: float, max_k: int) -> Iterator[Sequence[str]]:
    """H3 rings around the patient's home cell, from the cell itself outwards."""
    home = h3.latlng_to_cell(lat, lon, SEARCH_RESOLUTION)
    for k in range(max_k + 1):
        yield [str(c) for c in h3.grid_ring(home, k)]


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
