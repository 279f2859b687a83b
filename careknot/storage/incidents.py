"""Incidents and offers in Postgres, with every step appended to the event log.

Each decision is a conditional update inside one transaction, so concurrent workers and
gateways cannot both win: an incident moves to ``assigned`` once, a wave starts once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from careknot.storage.postgres import Database, EventRow, ts
from dispatch.model import PlannedOffer


@dataclass(frozen=True, slots=True)
class IncidentRow:
    id: str
    agency_id: str
    patient_id: str
    kind: str
    severity: int
    state: str
    assignee_id: str | None
    wave: int
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class SentOffer:
    offer_id: str
    incident_id: str
    caregiver_id: str
    planned: PlannedOffer


@dataclass(slots=True)
class Answered:
    """What an accept or decline changed."""

    incident_id: str
    outcome: str  # "assigned", "declined", or why it could not be taken
    eta_s: float = 0.0
    taken: list[tuple[str, str]] = field(default_factory=list)  # (offer_id, caregiver_id)
    wave_closed: bool = False


@dataclass(frozen=True, slots=True)
class Expired:
    offer_id: str
    incident_id: str
    caregiver_id: str


_INCIDENT = (
    "SELECT i.id, i.agency_id, i.patient_id, i.kind, i.severity, i.state, i.assignee_id,"
    " i.wave, p.lat, p.lon FROM incidents i JOIN patients p ON p.id = i.patient_id"
)


def _incident(row: asyncpg.Record) -> IncidentRow:
    return IncidentRow(**{**dict(row), "id": str(row["id"])})


def event(
    key: str, agency: str, incident: str, kind: str, actor: str, at: float, **p: object
) -> EventRow:
    return EventRow(key, agency, incident, kind, actor, at, dict(p))


class IncidentStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def open(
        self,
        *,
        event_id: str,
        agency_id: str,
        patient_id: str,
        device_id: str,
        kind: str,
        severity: int,
        at: float,
    ) -> IncidentRow | None:
        """Open an incident for a device event; None when that event was already seen."""
        incident_id = str(uuid.uuid4())
        async with self._db.transaction() as conn:
            created = await conn.fetchval(
                "INSERT INTO incidents(id, agency_id, patient_id, device_id, source_event_id,"
                " kind, severity, state, opened_at, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $8)"
                " ON CONFLICT (source_event_id) DO NOTHING RETURNING id",
                uuid.UUID(incident_id),
                agency_id,
                patient_id,
                device_id,
                event_id,
                kind,
                severity,
                ts(at),
            )
            if created is None:
                return None
            await self._db.append_events(
                conn,
                [
                    event(
                        f"{incident_id}:opened",
                        agency_id,
                        incident_id,
                        "incident_opened",
                        f"device:{device_id}",
                        at,
                        incident_kind=kind,
                        source_event_id=event_id,
                    )
                ],
            )
            row = await conn.fetchrow(f"{_INCIDENT} WHERE i.id = $1", uuid.UUID(incident_id))
        return _incident(row) if row else None

    async def get(self, incident_id: str) -> IncidentRow | None:
        row = await self._db.pool.fetchrow(f"{_INCIDENT} WHERE i.id = $1", uuid.UUID(incident_id))
        return _incident(row) if row else None

    async def offered_caregivers(self, incident_id: str) -> set[str]:
        rows = await self._db.pool.fetch(
            "SELECT caregiver_id FROM offers WHERE incident_id = $1", uuid.UUID(incident_id)
        )
        return {r["caregiver_id"] for r in rows}

    async def start_wave(
        self, incident: IncidentRow, planned: Sequence[PlannedOffer], now: float
    ) -> list[SentOffer] | None:
        """Record a wave of offers; None if another process already moved the incident on."""
        iid = uuid.UUID(incident.id)
        async with self._db.transaction() as conn:
            moved = await conn.fetchval(
                "UPDATE incidents SET wave = wave + 1, state = 'offered', updated_at = $3"
                " WHERE id = $1 AND wave = $2 AND state IN ('open', 'offered') RETURNING id",
                iid,
                incident.wave,
                ts(now),
            )
            if moved is None:
                return None
            sent = [SentOffer(str(uuid.uuid4()), incident.id, p.caregiver_id, p) for p in planned]
            await conn.executemany(
                "INSERT INTO offers(id, incident_id, caregiver_id, wave, state, distance_m, eta_s,"
                " offered_at, expires_at) VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8)",
                [
                    (
                        uuid.UUID(s.offer_id),
                        iid,
                        s.caregiver_id,
                        s.planned.wave,
                        s.planned.distance_m,
                        s.planned.eta_s,
                        ts(now),
                        ts(s.planned.expires_at),
                    )
                    for s in sent
                ],
            )
            await self._db.append_events(
                conn,
                [
                    event(
                        f"{s.offer_id}:offered",
                        incident.agency_id,
                        incident.id,
                        "offer_sent",
                        "dispatcher",
                        now,
                        offer_id=s.offer_id,
                        caregiver_id=s.caregiver_id,
                        wave=s.planned.wave,
                        distance_m=round(s.planned.distance_m, 1),
                        eta_s=round(s.planned.eta_s, 1),
                        expires_at=s.planned.expires_at,
                    )
                    for s in sent
                ],
            )
        return sent

    async def escalate(self, incident: IncidentRow, reason: str, now: float) -> bool:
        """Hand the incident to the agency's people; False if it was no longer waiting."""
        async with self._db.transaction() as conn:
            moved = await conn.fetchval(
                "UPDATE incidents SET state = 'escalated', updated_at = $3"
                " WHERE id = $1 AND wave = $2 AND state IN ('open', 'offered') RETURNING id",
                uuid.UUID(incident.id),
                incident.wave,
                ts(now),
            )
            if moved is None:
                return False
            await self._db.append_events(
                conn,
                [
                    event(
                        f"{incident.id}:escalated",
                        incident.agency_id,
                        incident.id,
                        "incident_escalated",
                        "dispatcher",
                        now,
                        reason=reason,
                        waves=incident.wave,
                    )
                ],
            )
        return True
