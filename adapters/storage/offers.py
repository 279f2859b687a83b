"""Answers to offers, and offers that ran out of time, as atomic Postgres transactions.

Exactly one acceptance wins: the incident moves from ``offered`` to ``assigned`` under a
conditional update, so of two accepts racing through different processes the second finds
the incident already assigned and its offer is marked ``taken``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from asyncpg import Record

from adapters.storage.announcements import Announcement, keep
from adapters.storage.incidents import event
from adapters.storage.postgres import Conn, Database, ts


@dataclass(slots=True)
class Answered:
    """What an accept or decline changed, of an incident of ``agency_id`` (the offer's, as
    Postgres has it)."""

    incident_id: str
    agency_id: str
    outcome: str  # "assigned", "declined", or why it could not be taken
    eta_s: float = 0.0
    taken: list[tuple[str, str]] = field(default_factory=list)  # (offer_id, caregiver_id)
    wave_closed: bool = False


@dataclass(frozen=True, slots=True)
class Expired:
    offer_id: str
    incident_id: str
    caregiver_id: str
    agency_id: str


class OfferStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def accept(
        self,
        offer_id: str,
        caregiver_id: str,
        now: float,
        announce: Callable[[Answered], Announcement] | None = None,
    ) -> Answered | None:
        """Take an acceptance, and keep what ``announce`` makes of a change it made (she won,
        or her offer was taken); None when the offer is not this caregiver's."""
        async with self._db.transaction() as conn:
            offer = await self._lock_offer(conn, offer_id, caregiver_id)
            if offer is None:
                return None
            iid, agency = str(offer["incident_id"]), offer["agency_id"]
            if offer["state"] != "pending" or offer["expires_at"].timestamp() <= now:
                return Answered(
                    iid,
                    agency,
                    f"offer_{offer['state']}" if offer["state"] != "pending" else "offer_expired",
                )
            won = await conn.fetchval(
                "UPDATE incidents SET state = 'assigned', assignee_id = $2, updated_at = $3"
                " WHERE id = $1 AND state IN ('offered', 'escalated') RETURNING id",
                offer["incident_id"],
                caregiver_id,
                ts(now),
            )
            if won is None:
                await self._set_state(conn, offer_id, "taken", now)
                lost = Answered(iid, agency, "taken")
                if announce is not None:
                    await keep(conn, iid, announce(lost), now)
                return lost
            await self._set_state(conn, offer_id, "accepted", now)
            taken = await conn.fetch(
                "UPDATE offers SET state = 'taken', answered_at = $2"
                " WHERE incident_id = $1 AND state = 'pending' RETURNING id, caregiver_id",
                offer["incident_id"],
                ts(now),
            )
            result = Answered(
                iid,
                agency,
                "assigned",
                offer["eta_s"],
                [(str(r["id"]), r["caregiver_id"]) for r in taken],
            )
            await self._db.append_events(
                conn,
                [
                    event(
                        f"{offer_id}:accepted",
                        agency,
                        iid,
                        "offer_accepted",
                        f"caregiver:{caregiver_id}",
                        now,
                        offer_id=offer_id,
                    ),
                    event(
                        f"{iid}:assigned",
                        agency,
                        iid,
                        "incident_assigned",
                        "dispatcher",
                        now,
                        caregiver_id=caregiver_id,
                        eta_s=round(offer["eta_s"], 1),
                    ),
                    *(
                        event(
                            f"{oid}:taken",
                            agency,
                            iid,
                            "offer_taken",
                            "dispatcher",
                            now,
                            offer_id=oid,
                            caregiver_id=cg,
                        )
                        for oid, cg in result.taken
                    ),
                ],
            )
            if announce is not None:
                await keep(conn, iid, announce(result), now)
        return result

    async def decline(
        self,
        offer_id: str,
        caregiver_id: str,
        reason: str | None,
        now: float,
        announce: Callable[[str, str], Announcement] | None = None,
    ) -> Answered | None:
        """Take a decline, and keep what ``announce`` makes of it (of the offer's agency and
        incident); None when the offer is not this caregiver's."""
        async with self._db.transaction() as conn:
            offer = await self._lock_offer(conn, offer_id, caregiver_id)
            if offer is None:
                return None
            iid, agency = str(offer["incident_id"]), offer["agency_id"]
            if offer["state"] != "pending":
                return Answered(iid, agency, f"offer_{offer['state']}")
            await self._set_state(conn, offer_id, "declined", now)
            await self._db.append_events(
                conn,
                [
                    event(
                        f"{offer_id}:declined",
                        agency,
                        iid,
                        "offer_declined",
                        f"caregiver:{caregiver_id}",
                        now,
                        offer_id=offer_id,
                        reason=reason or "",
                    )
                ],
            )
            if announce is not None:
                await keep(conn, iid, announce(agency, iid), now)
            closed = await self._wave_closed(conn, offer["incident_id"])
        return Answered(iid, agency, "declined", wave_closed=closed)

    async def expire_due(
        self, now: float, announce: Callable[[list[Expired]], Announcement] | None = None
    ) -> tuple[list[Expired], set[str]]:
        """Expire pending offers past their window, and keep what ``announce`` makes of each
        incident's; also returns incidents whose wave closed."""
        async with self._db.transaction() as conn:
            due = await conn.fetch(
                "SELECT i.id FROM incidents i WHERE EXISTS (SELECT 1 FROM offers o"
                " WHERE o.incident_id = i.id AND o.state = 'pending' AND o.expires_at <= $1)"
                " ORDER BY i.id FOR UPDATE OF i",
                ts(now),
            )
            rows = await conn.fetch(
                "UPDATE offers o SET state = 'expired', answered_at = $1 FROM incidents i"
                " WHERE o.incident_id = ANY($2::uuid[]) AND o.state = 'pending'"
                " AND o.expires_at <= $1 AND i.id = o.incident_id"
                " RETURNING o.id, o.incident_id, o.caregiver_id, i.agency_id",
                ts(now),
                [r["id"] for r in due],
            )
            expired = [
                Expired(str(r["id"]), str(r["incident_id"]), r["caregiver_id"], r["agency_id"])
                for r in rows
            ]
            await self._db.append_events(
                conn,
                [
                    event(
                        f"{e.offer_id}:expired",
                        r["agency_id"],
                        e.incident_id,
                        "offer_expired",
                        "timer",
                        now,
                        offer_id=e.offer_id,
                        caregiver_id=e.caregiver_id,
                    )
                    for e, r in zip(expired, rows, strict=True)
                ],
            )
            if announce is not None:
                for incident_id in sorted({e.incident_id for e in expired}):
                    mine = [e for e in expired if e.incident_id == incident_id]
                    await keep(conn, incident_id, announce(mine), now)
            closed = set()
            for iid in {r["incident_id"] for r in rows}:
                if await self._wave_closed(conn, iid):
                    closed.add(str(iid))
        return expired, closed

    async def _lock_offer(self, conn: Conn, offer_id: str, caregiver_id: str) -> Record | None:
        """Lock the offer's incident, then the offer: every writer locks in that order, so
        answers and timers on one incident queue up instead of deadlocking."""
        try:
            oid = uuid.UUID(offer_id)
        except ValueError:
            return None
        incident_id = await conn.fetchval(
            "SELECT incident_id FROM offers WHERE id = $1 AND caregiver_id = $2", oid, caregiver_id
        )
        if incident_id is None:
            return None
        await conn.execute("SELECT 1 FROM incidents WHERE id = $1 FOR UPDATE", incident_id)
        row: Record | None = await conn.fetchrow(
            "SELECT o.incident_id, o.state, o.expires_at, o.eta_s, i.agency_id FROM offers o"
            " JOIN incidents i ON i.id = o.incident_id WHERE o.id = $1 FOR UPDATE OF o",
            oid,
        )
        return row

    async def _set_state(self, conn: Conn, offer_id: str, state: str, now: float) -> None:
        await conn.execute(
            "UPDATE offers SET state = $2, answered_at = $3 WHERE id = $1",
            uuid.UUID(offer_id),
            state,
            ts(now),
        )

    async def _wave_closed(self, conn: Conn, incident_id: uuid.UUID) -> bool:
        return bool(
            await conn.fetchval(
                "SELECT i.state IN ('offered', 'escalated') AND NOT EXISTS (SELECT 1 FROM offers o"
                " WHERE o.incident_id = i.id AND o.state = 'pending')"
                " FROM incidents i WHERE i.id = $1",
                incident_id,
            )
        )
