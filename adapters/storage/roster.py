"""The roster in Postgres: what eligibility needs to know about candidate caregivers.

:meth:`Roster.profiles` loads, for a set of candidate ids, their skills, certificates, shifts
around now (``SHIFT_HORIZON_S`` either side) and time worked in the working-time reference
period (``worked_periods``, and her visits from check-in to check-out), in one query each,
and the agency's rules; answers are kept for ``ttl_s`` (a few seconds), so the waves of one
incident do not read the same rows again.

Tables (migration 2): ``agency_rules``, ``certificates``, ``shifts``, ``worked_periods``; and
``visits`` (migration 4), whose check-ins and check-outs are the hours she really worked.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence

from adapters.storage.postgres import Database, ts
from dispatch.eligibility import AgencyRules, Profile
from dispatch.worktime import DAY_S, REFERENCE_S, Period
from visits.rules import PRESENT

SHIFT_HORIZON_S = 14 * DAY_S  # shifts this far either side of now make a caregiver "rostered"
TTL_S = 5.0


class Roster:
    """Reads roster data for dispatch, with a short cache (monotonic clock)."""

    def __init__(
        self, db: Database, *, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._db = db
        self._ttl_s = ttl_s
        self._clock = clock
        self._profiles: dict[str, tuple[float, Profile]] = {}
        self._rules: dict[str, tuple[float, AgencyRules]] = {}

    async def rules(self, agency_id: str) -> AgencyRules:
        cached = self._rules.get(agency_id)
        if cached and self._clock() - cached[0] < self._ttl_s:
            return cached[1]
        row = await self._db.pool.fetchrow(
            "SELECT require_skills, require_shift FROM agency_rules WHERE agency_id = $1",
            agency_id,
        )
        rules = AgencyRules(**dict(row)) if row else AgencyRules()
        self._rules[agency_id] = (self._clock(), rules)
        return rules

    async def profiles(self, caregiver_ids: Collection[str], now: float) -> dict[str, Profile]:
        """Every id's profile (an empty one for an id the roster does not know)."""
        fresh = self._clock()
        missing = [
            c
            for c in caregiver_ids
            if c not in self._profiles or fresh - self._profiles[c][0] >= self._ttl_s
        ]
        if missing:
            for cid, profile in (await self._load(missing, now)).items():
                self._profiles[cid] = (fresh, profile)
        return {c: self._profiles[c][1] for c in caregiver_ids}

    async def _load(self, ids: Sequence[str], now: float) -> dict[str, Profile]:
        pool = self._db.pool
        rows = await pool.fetch(
            "SELECT id, skills FROM caregivers WHERE id = ANY($1::text[])", list(ids)
        )
        skills = {r["id"]: frozenset(r["skills"]) for r in rows}
        cert_rows = await pool.fetch(
            "SELECT caregiver_id, kind, expires_at FROM certificates"
            " WHERE caregiver_id = ANY($1::text[])",
            list(ids),
        )
        certs: dict[str, dict[str, float]] = {}
        for r in cert_rows:
            certs.setdefault(r["caregiver_id"], {})[r["kind"]] = r["expires_at"].timestamp()
        shifts = await self._periods("shifts", ids, now - SHIFT_HORIZON_S, now + SHIFT_HORIZON_S)
        worked = await self._periods("worked_periods", ids, now - REFERENCE_S - DAY_S, now)
        for cid, visited in (await self._visited(ids, now - REFERENCE_S - DAY_S, now)).items():
            worked.setdefault(cid, []).extend(visited)
        out: dict[str, Profile] = {}
        for cid in ids:
            out[cid] = Profile(
                skills=skills.get(cid, frozenset()),
                certificates=certs.get(cid, {}),
                shifts=tuple(shifts.get(cid, ())),
                worked=tuple(worked.get(cid, ())),
            )
        return out

    async def _periods(
        self, table: str, ids: Sequence[str], start: float, end: float
    ) -> dict[str, list[Period]]:
        rows = await self._db.pool.fetch(
            f"SELECT caregiver_id, starts_at, ends_at FROM {table}"
            " WHERE caregiver_id = ANY($1::text[]) AND ends_at > $2 AND starts_at < $3",
            list(ids),
            ts(start),
            ts(end),
        )
        out: dict[str, list[Period]] = {}
        for r in rows:
            out.setdefault(r["caregiver_id"], []).append(
                Period(r["starts_at"].timestamp(), r["ends_at"].timestamp())
            )
        return out

    async def _visited(
        self, ids: Sequence[str], start: float, end: float
    ) -> dict[str, list[Period]]:
        """Time at work the visits record: from check-in to check-out, or to ``end`` for a visit
        she is at now. Visits rostered a day either side of the window are read, so one begun
        or ended well off its rostered time still counts; what falls outside is clipped by the
        working-time rules."""
        rows = await self._db.pool.fetch(
            "SELECT caregiver_id, (check_in->>'at')::float8 AS came,"
            " (check_out->>'at')::float8 AS went, state FROM visits"
            " WHERE caregiver_id = ANY($1::text[]) AND check_in IS NOT NULL"
            " AND ends_at > $2 AND starts_at < $3",
            list(ids),
            ts(start - DAY_S),
            ts(end + DAY_S),
        )
        out: dict[str, list[Period]] = {}
        for r in rows:
            went = r["went"] if r["went"] is not None else end if r["state"] in PRESENT else None
            if went is not None and min(went, end) > r["came"]:
                out.setdefault(r["caregiver_id"], []).append(Period(r["came"], min(went, end)))
        return out

    async def on_shift(self, agency_id: str, now: float) -> dict[str, frozenset[str]]:
        """The agency's caregivers on shift at ``now``, with their skills."""
        rows = await self._db.pool.fetch(
            "SELECT DISTINCT c.id, c.skills FROM shifts s"
            " JOIN caregivers c ON c.id = s.caregiver_id"
            " WHERE c.agency_id = $1 AND s.starts_at <= $2 AND s.ends_at > $2",
            agency_id,
            ts(now),
        )
        return {r["id"]: frozenset(r["skills"]) for r in rows}

    # ------------------------------------------------------------ writes (admin, tests, seeding)

    async def set_rules(self, agency_id: str, rules: AgencyRules) -> None:
        await self._db.pool.execute(
            "INSERT INTO agency_rules(agency_id, require_skills, require_shift)"
            " VALUES ($1, $2, $3) ON CONFLICT (agency_id) DO UPDATE SET"
            " require_skills = EXCLUDED.require_skills, require_shift = EXCLUDED.require_shift",
            agency_id,
            rules.require_skills,
            rules.require_shift,
        )
        self._rules.pop(agency_id, None)

    async def set_certificate(self, caregiver_id: str, kind: str, expires_at: float) -> None:
        await self._db.pool.execute(
            "INSERT INTO certificates(caregiver_id, kind, expires_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (caregiver_id, kind) DO UPDATE SET expires_at = EXCLUDED.expires_at",
            caregiver_id,
            kind,
            ts(expires_at),
        )
        self._profiles.pop(caregiver_id, None)

    async def add_shift(self, caregiver_id: str, start: float, end: float) -> None:
        await self._add_period("shifts", caregiver_id, start, end)

    async def add_worked(self, caregiver_id: str, start: float, end: float) -> None:
        await self._add_period("worked_periods", caregiver_id, start, end)

    async def _add_period(self, table: str, caregiver_id: str, start: float, end: float) -> None:
        await self._db.pool.execute(
            f"INSERT INTO {table}(caregiver_id, starts_at, ends_at) VALUES ($1, $2, $3)",
            caregiver_id,
            ts(start),
            ts(end),
        )
        self._profiles.pop(caregiver_id, None)
