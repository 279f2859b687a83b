"""Incidents in Postgres as the dispatcher moves them: opened or joined by a trigger, offered
in waves, escalated; every step appended to the event log.

Each decision is a conditional update inside one transaction, so concurrent workers and
gateways cannot both win: an incident moves to ``assigned`` once, a wave starts once.
Answers and expiry are :mod:`adapters.storage.offers`'s, dispatchers' assign and resolve
:mod:`adapters.storage.handovers`'s, and what fell due :mod:`adapters.storage.backlog`'s.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import asyncpg

from adapters.storage.announcements import Announcement, keep
from adapters.storage.postgres import Conn, Database, EventRow, ts
from dispatch.model import PlannedOffer
from kernel.errors import StorageError


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
class Trigger:
    """A device event that opens an incident or joins one (or a dispatcher's hand on an
    alarm: no device, its ``event_id`` naming the alarm)."""

    event_id: str
    agency_id: str
    patient_id: str
    device_id: str | None
    kind: str
    severity: int
    at: float

    @property
    def actor(self) -> str:
        return self.event_id if self.device_id is None else f"device:{self.device_id}"


@dataclass(frozen=True, slots=True)
class Opened:
    incident: IncidentRow
    joined: bool


@dataclass(frozen=True, slots=True)
class SentOffer:
    offer_id: str
    incident_id: str
    caregiver_id: str
    planned: PlannedOffer


WAITING = ("open", "offered", "escalated")

INCIDENT_SELECT = (
    "SELECT i.id, i.agency_id, i.patient_id, i.kind, i.severity, i.state, i.assignee_id,"
    " i.wave, p.lat, p.lon FROM incidents i JOIN patients p ON p.id = i.patient_id"
)


def incident_row(row: asyncpg.Record) -> IncidentRow:
    return IncidentRow(**{**dict(row), "id": str(row["id"])})


def _joined_key(event_id: str) -> str:
    return f"joined:{event_id}"


def event(
    key: str, agency: str, incident: str | None, kind: str, actor: str, at: float, **p: object
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
        trigger = Trigger(event_id, agency_id, patient_id, device_id, kind, severity, at)
        async with self._db.transaction() as conn:
            return await self._insert(conn, trigger)

    async def open_or_join(
        self,
        trigger: Trigger,
        window_s: float,
        announce_join: Callable[[IncidentRow], Announcement] | None = None,
    ) -> Opened | None:
        """Join the patient's waiting incident triggered within ``window_s``, else open one;
        a join is announced with ``announce_join`` in the same transaction.

        None when this event was already seen (opened or joined). A lock per patient makes
        two triggers from one home, handled at once by two workers, open one incident.
        """
        async with self._db.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('patient:' || $1))", trigger.patient_id
            )
            if await self._seen(conn, trigger.event_id):
                return None
            waiting = await conn.fetchval(
                "SELECT id FROM incidents WHERE patient_id = $1"
                " AND state IN ('open', 'offered', 'escalated')"
                " AND COALESCE(last_trigger_at, opened_at) >= $2"
                " ORDER BY opened_at DESC LIMIT 1",
                trigger.patient_id,
                ts(trigger.at - window_s),
            )
            if waiting is None:
                row = await self._insert(conn, trigger)
                return None if row is None else Opened(row, joined=False)
            joined = await self._join(conn, waiting, trigger)
            if announce_join is not None:
                await keep(conn, joined.id, announce_join(joined), trigger.at)
            return Opened(joined, joined=True)

    async def opened_by(self, event_id: str) -> IncidentRow | None:
        """The incident ``event_id`` opened, if it opened one."""
        row = await self._db.pool.fetchrow(
            f"{INCIDENT_SELECT} WHERE i.source_event_id = $1", event_id
        )
        return incident_row(row) if row else None

    async def _seen(self, conn: Conn, event_id: str) -> bool:
        opened = await conn.fetchval("SELECT 1 FROM incidents WHERE source_event_id = $1", event_id)
        joined = await conn.fetchval(
            "SELECT 1 FROM events WHERE event_key = $1", _joined_key(event_id)
        )
        return bool(opened or joined)

    async def _insert(self, conn: Conn, t: Trigger) -> IncidentRow | None:
        incident_id = str(uuid.uuid4())
        created = await conn.fetchval(
            "INSERT INTO incidents(id, agency_id, patient_id, device_id, source_event_id,"
            " kind, severity, state, opened_at, updated_at, last_trigger_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $8, $8)"
            " ON CONFLICT (source_event_id) DO NOTHING RETURNING id",
            uuid.UUID(incident_id),
            t.agency_id,
            t.patient_id,
            t.device_id,
            t.event_id,
            t.kind,
            t.severity,
            ts(t.at),
        )
        if created is None:
            return None
        opened = event(
            f"{incident_id}:opened",
            t.agency_id,
            incident_id,
            "incident_opened",
            t.actor,
            t.at,
            incident_kind=t.kind,
            source_event_id=t.event_id,
        )
        await self._db.append_events(conn, [opened])
        row = await conn.fetchrow(f"{INCIDENT_SELECT} WHERE i.id = $1", uuid.UUID(incident_id))
        return incident_row(row) if row else None

    async def _join(self, conn: Conn, incident_id: uuid.UUID, t: Trigger) -> IncidentRow:
        await conn.execute(
            "UPDATE incidents SET last_trigger_at = $2, severity = LEAST(severity, $3)"
            " WHERE id = $1",
            incident_id,
            ts(t.at),
            t.severity,
        )
        joined = event(
            _joined_key(t.event_id),
            t.agency_id,
            str(incident_id),
            "trigger_joined",
            t.actor,
            t.at,
            trigger_kind=t.kind,
            source_event_id=t.event_id,
        )
        await self._db.append_events(conn, [joined])
        row = await conn.fetchrow(f"{INCIDENT_SELECT} WHERE i.id = $1", incident_id)
        if row is None:
            raise StorageError(f"incident {incident_id} vanished while joining it")
        return incident_row(row)

    async def get(self, incident_id: str) -> IncidentRow | None:
        """The incident; None when there is none (``incident_id`` not even an id among them)."""
        try:
            iid = uuid.UUID(incident_id)
        except ValueError:
            return None
        row = await self._db.pool.fetchrow(f"{INCIDENT_SELECT} WHERE i.id = $1", iid)
        return incident_row(row) if row else None

    async def looked_at(self, incident: IncidentRow, now: float) -> None:
        """Someone looked for whom to ask and found no one: the timer's next look waits its
        quiet time (``dispatch.offers.STALLED_AFTER_S``) instead of coming every tick."""
        await self._db.pool.execute(
            "UPDATE incidents SET updated_at = $2 WHERE id = $1 AND wave = $3",
            uuid.UUID(incident.id),
            ts(now),
            incident.wave,
        )

    async def offers_out(self, incident_id: str) -> bool:
        """Whether an offer of the incident is still pending."""
        return bool(
            await self._db.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM offers WHERE incident_id = $1 AND state = 'pending')",
                uuid.UUID(incident_id),
            )
        )

    async def offered_caregivers(self, incident_id: str) -> set[str]:
        rows = await self._db.pool.fetch(
            "SELECT caregiver_id FROM offers WHERE incident_id = $1", uuid.UUID(incident_id)
        )
        return {r["caregiver_id"] for r in rows}

    async def start_wave(
        self,
        incident: IncidentRow,
        planned: Sequence[PlannedOffer],
        now: float,
        announce: Callable[[IncidentRow, list[SentOffer]], Announcement] | None = None,
    ) -> list[SentOffer] | None:
        """Record a wave of offers, and what ``announce`` makes of it (told the incident as the
        wave left it: escalated meanwhile, it says so); None if another process already moved
        the incident on.

        An escalated incident stays escalated: the waves go on while a person also knows."""
        iid = uuid.UUID(incident.id)
        async with self._db.transaction() as conn:
            moved = await conn.fetchval(
                "UPDATE incidents SET wave = wave + 1, updated_at = $3,"
                " state = CASE state WHEN 'escalated' THEN 'escalated' ELSE 'offered' END"
                " WHERE id = $1 AND wave = $2 AND state IN ('open', 'offered', 'escalated')"
                " RETURNING state",
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
            if announce is not None:
                now_is = replace(incident, state=moved, wave=incident.wave + 1)
                await keep(conn, incident.id, announce(now_is, sent), now)
        return sent

    async def escalate(
        self,
        incident: IncidentRow,
        reason: str,
        now: float,
        announcement: Announcement | None = None,
    ) -> bool:
        """Hand the incident to the agency's people, and keep ``announcement`` with it; False
        if it was no longer waiting."""
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
            await keep(conn, incident.id, announcement, now)
        return True
