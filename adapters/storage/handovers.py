"""A dispatcher's hand on an incident: ``assign`` it to a caregiver or ``resolve`` it.

Each is one transaction holding the incident's row lock; the incident's pending offers are
closed (``taken`` or ``cancelled``) and every step is appended to the event log with the
dispatcher as its actor.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from adapters.storage.announcements import Announcement, keep
from adapters.storage.incidents import WAITING, event
from adapters.storage.postgres import Conn, Database, EventRow, ts


@dataclass(slots=True)
class Handover:
    """What a dispatcher's assign or resolve changed: ``outcome`` is ``assigned`` or
    ``resolved``, or why nothing changed (``unknown_incident``, ``other_agency``,
    ``not_waiting``, ``unknown_caregiver``, ``already_resolved``)."""

    outcome: str
    offers: list[tuple[str, str]] = field(default_factory=list)  # (offer_id, caregiver_id)
    assignee_id: str | None = None

    @property
    def done(self) -> bool:
        return self.outcome in ("assigned", "resolved")


UNRESOLVED = (*WAITING, "assigned")
Announce = Callable[[Handover], Announcement]


class HandoverStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def assign(
        self,
        incident_id: str,
        caregiver_id: str,
        agency_id: str,
        actor: str,
        now: float,
        announce: Announce | None = None,
        command_id: str = "",
    ) -> Handover:
        """A dispatcher hands a waiting incident to a caregiver of her agency; what
        ``announce`` makes of it is kept with the change, the command's id in the log."""
        async with self._db.transaction() as conn:
            refused = await self._lock_for(conn, incident_id, agency_id, WAITING)
            if refused is not None:
                return Handover(refused)
            if not await conn.fetchval(
                "SELECT 1 FROM caregivers WHERE id = $1 AND agency_id = $2", caregiver_id, agency_id
            ):
                return Handover("unknown_caregiver")
            iid = uuid.UUID(incident_id)
            await conn.execute(
                "UPDATE incidents SET state = 'assigned', assignee_id = $2, updated_at = $3"
                " WHERE id = $1",
                iid,
                caregiver_id,
                ts(now),
            )
            taken = await self._close_pending(conn, iid, "taken", now)
            done = event(
                f"{incident_id}:assigned",
                agency_id,
                incident_id,
                "incident_assigned",
                actor,
                now,
                caregiver_id=caregiver_id,
                manual=True,
                command_id=command_id,
            )
            await self._db.append_events(
                conn, [done, *self._offer_events(taken, "offer_taken", agency_id, incident_id, now)]
            )
            handover = Handover("assigned", taken, caregiver_id)
            if announce is not None:
                await keep(conn, incident_id, announce(handover), now)
        return handover

    async def resolve(
        self,
        incident_id: str,
        agency_id: str,
        actor: str,
        now: float,
        announce: Announce | None = None,
        command_id: str = "",
    ) -> Handover:
        """Close an incident; its pending offers are cancelled. What ``announce`` makes of it
        is kept with the change, the command's id in the log."""
        async with self._db.transaction() as conn:
            refused = await self._lock_for(conn, incident_id, agency_id, UNRESOLVED)
            if refused is not None:
                return Handover("already_resolved" if refused == "not_waiting" else refused)
            iid = uuid.UUID(incident_id)
            assignee = await conn.fetchval(
                "UPDATE incidents SET state = 'resolved', updated_at = $2 WHERE id = $1"
                " RETURNING assignee_id",
                iid,
                ts(now),
            )
            cancelled = await self._close_pending(conn, iid, "cancelled", now)
            done = event(
                f"{incident_id}:resolved",
                agency_id,
                incident_id,
                "incident_resolved",
                actor,
                now,
                command_id=command_id,
            )
            offer_events = self._offer_events(
                cancelled, "offer_cancelled", agency_id, incident_id, now
            )
            await self._db.append_events(conn, [done, *offer_events])
            handover = Handover("resolved", cancelled, assignee)
            if announce is not None:
                await keep(conn, incident_id, announce(handover), now)
        return handover

    async def done_by(self, incident_id: str, command_id: str) -> str | None:
        """What the command with this id did to the incident (``assigned``, ``resolved``), if
        it did anything: a command handled again (Kafka's replay, a retry) is told as done."""
        try:
            iid = uuid.UUID(incident_id)
        except ValueError:
            return None
        kind = await self._db.pool.fetchval(
            "SELECT kind FROM events WHERE incident_id = $1 AND payload->>'command_id' = $2"
            " AND kind IN ('incident_assigned', 'incident_resolved') LIMIT 1",
            iid,
            command_id,
        )
        return None if kind is None else str(kind).removeprefix("incident_")

    async def _lock_for(
        self, conn: Conn, incident_id: str, agency_id: str, states: tuple[str, ...]
    ) -> str | None:
        """Lock the incident; a reason when it is not the agency's or not in ``states``."""
        try:
            iid = uuid.UUID(incident_id)
        except ValueError:
            return "unknown_incident"
        row = await conn.fetchrow(
            "SELECT agency_id, state FROM incidents WHERE id = $1 FOR UPDATE", iid
        )
        if row is None:
            return "unknown_incident"
        if row["agency_id"] != agency_id:
            return "other_agency"
        return None if row["state"] in states else "not_waiting"

    async def _close_pending(
        self, conn: Conn, iid: uuid.UUID, state: str, now: float
    ) -> list[tuple[str, str]]:
        rows = await conn.fetch(
            "UPDATE offers SET state = $2, answered_at = $3"
            " WHERE incident_id = $1 AND state = 'pending' RETURNING id, caregiver_id",
            iid,
            state,
            ts(now),
        )
        return [(str(r["id"]), r["caregiver_id"]) for r in rows]

    def _offer_events(
        self, offers: list[tuple[str, str]], kind: str, agency: str, incident: str, now: float
    ) -> list[EventRow]:
        suffix = kind.removeprefix("offer_")
        return [
            event(
                f"{oid}:{suffix}",
                agency,
                incident,
                kind,
                "dispatcher",
                now,
                offer_id=oid,
                caregiver_id=cg,
            )
            for oid, cg in offers
        ]
