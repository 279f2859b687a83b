"""The candidates for an incident's next wave: read from the live index (the worker's copy of
it once that is ready, else Redis) and the roster, then ranked and screened by the pure core
(``dispatch.ranking``, ``dispatch.eligibility``).

A search looks at :data:`SEARCH_POOL` caregivers beyond those already asked, and doubles that
while the roster rules out so many that too few are left for a wave, up to :data:`SEARCH_CAP`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from adapters.storage.incidents import IncidentRow
from adapters.storage.live import LiveIndex
from adapters.storage.live_mirror import LiveMirror
from adapters.storage.roster import Roster
from dispatch.eligibility import needs_of, ruled_out
from dispatch.eta import TravelModel
from dispatch.model import Candidate, Ranked
from dispatch.planning import askable, wave_size_of
from dispatch.ranking import SearchStep, rank, search_plan
from kernel.settings import Settings

log = logging.getLogger(__name__)

SEARCH_POOL = 10  # candidates looked at per wave, beyond those already asked
SEARCH_CAP = 640  # at most this many, when the roster rules out the nearest ones


@dataclass(frozen=True, slots=True)
class Shortlist:
    """The nearest candidates, ETA first, and those of them the roster rules out, with why."""

    ranked: list[Ranked]
    ineligible: dict[str, str]


class CandidateSearch:
    """The dispatcher's reads of whom a wave may ask."""

    def __init__(
        self,
        settings: Settings,
        live: LiveIndex,
        mirror: LiveMirror | None,
        roster: Roster,
        model: TravelModel,
        needs: Mapping[str, frozenset[str]],
    ) -> None:
        self._s = settings
        self._live = live
        self._mirror = mirror
        self._roster = roster
        self._model = model
        self._needs = needs

    async def change_number(self) -> int:
        """Where the live index stands now, for a search in the worker's copy of it."""
        return 0 if self._mirror is None else await self._mirror.change_number()

    async def shortlist(
        self, incident: IncidentRow, asked: Collection[str], now: float, change: int
    ) -> Shortlist:
        """Enough candidates who may be asked for a wave, unless the index holds no more
        within reach or ``SEARCH_CAP`` were looked at."""
        plan = list(search_plan(incident.lat, incident.lon, self._s.search_area_rings))
        wave_size = wave_size_of(incident, self._s.offer_wave_size, self._s.max_waves)
        need = len(asked) + max(SEARCH_POOL, 2 * wave_size)
        while True:
            found = await self._search(incident, plan, need, now, change)
            ranked = rank(
                found,
                agency_id=incident.agency_id,
                lat=incident.lat,
                lon=incident.lon,
                model=self._model,
                now=now,
                stale_after_s=self._s.position_stale_s,
            )
            ineligible = await self._ineligible(incident, ranked, now)
            fresh = len(askable(ranked, offered=asked, ineligible=ineligible))
            if fresh >= wave_size or len(found) < need or need >= SEARCH_CAP:
                return Shortlist(ranked, ineligible)
            need = min(2 * need, SEARCH_CAP)

    async def _search(
        self, incident: IncidentRow, plan: list[SearchStep], need: int, now: float, change: int
    ) -> list[Candidate]:
        """The nearest ``need`` fresh, available caregivers: from the worker's copy of the live
        index once it holds change number ``change``, else from Redis."""
        where = (incident.agency_id, plan)
        stale = self._s.position_stale_s
        lat, lon = incident.lat, incident.lon
        if self._mirror is not None:
            found = await self._mirror.search(
                *where, lat=lat, lon=lon, need=need, now=now, stale_after_s=stale, change=change
            )
            if found is not None:
                return found
        return await self._live.search(
            *where, lat=lat, lon=lon, need=need, now=now, stale_after_s=stale
        )

    async def _ineligible(
        self, incident: IncidentRow, ranked: list[Ranked], now: float
    ) -> dict[str, str]:
        """Those of ``ranked`` the roster does not allow to take this incident now, and why."""
        if not ranked:
            return {}
        rules = await self._roster.rules(incident.agency_id)
        profiles = await self._roster.profiles([r.candidate.caregiver_id for r in ranked], now)
        needs = needs_of(incident.kind, self._needs)
        ineligible = ruled_out(profiles, needs=needs, rules=rules, now=now)
        for cid, why in ineligible.items():
            log.info("incident %s: %s not eligible (%s)", incident.id, cid, why)
        return ineligible
