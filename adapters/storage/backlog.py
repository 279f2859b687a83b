"""What fell due: the reads the offer timer and a restarting worker use to move incidents on.

Nothing here changes state; the stores' conditional updates do, so two workers reading the
same backlog still make one wave and one escalation.
"""

from __future__ import annotations

from collections.abc import Mapping

from adapters.storage.incidents import INCIDENT_SELECT, IncidentRow, SentOffer, incident_row
from adapters.storage.postgres import Database, ts
from dispatch.model import PlannedOffer

_NOTHING_OUT = (
    "NOT EXISTS (SELECT 1 FROM offers o WHERE o.incident_id = i.id"
    " AND (o.state = 'pending' OR o.answered_at > $1))"
)


class Backlog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def overdue(self, opened_before: Mapping[int, float]) -> list[IncidentRow]:
        """Incidents still waiting for an acceptance, opened before their severity's time;
        a severity not in ``opened_before`` waits as long as the longest there."""
        if not opened_before:
            return []
        rows = await self._db.pool.fetch(
            f"{INCIDENT_SELECT} LEFT JOIN unnest($1::smallint[], $2::timestamptz[])"
            " AS due(severity, before) ON due.severity = i.severity"
            " WHERE i.state IN ('open', 'offered') AND i.opened_at <= COALESCE(due.before, $3)",
            list(opened_before),
            [ts(t) for t in opened_before.values()],
            ts(min(opened_before.values())),
        )
        return [incident_row(r) for r in rows]

    async def stalled(self, quiet_since: float) -> list[str]:
        """Incidents waiting with no offer out and nothing answered or changed since
        ``quiet_since``: a wave closed, or an incident opened, and no worker moved it on; or
        an escalated incident with no one left to ask when last looked at (its waves go on)."""
        rows = await self._db.pool.fetch(
            "SELECT i.id FROM incidents i WHERE i.state IN ('open', 'offered', 'escalated')"
            f" AND i.updated_at <= $1 AND {_NOTHING_OUT} ORDER BY i.opened_at",
            ts(quiet_since),
        )
        return [str(r["id"]) for r in rows]

    async def unresolved(self) -> list[IncidentRow]:
        """Every incident not resolved yet: waiting, or assigned and on its way."""
        rows = await self._db.pool.fetch(
            f"{INCIDENT_SELECT} WHERE i.state IN ('open', 'offered', 'escalated', 'assigned')"
            " ORDER BY i.opened_at"
        )
        return [incident_row(r) for r in rows]

    async def escalated_unalarmed(self) -> list[IncidentRow]:
        """Escalated incidents that never had their alarm (a worker stopped between the two)."""
        rows = await self._db.pool.fetch(
            f"{INCIDENT_SELECT} WHERE i.state = 'escalated' AND NOT EXISTS (SELECT 1 FROM alarms a"
            " WHERE a.agency_id = i.agency_id AND a.source = 'incident:' || i.id::text"
            " AND a.kind = 'incident_escalated') ORDER BY i.opened_at"
        )
        return [incident_row(r) for r in rows]

    async def standing_offers(self, offered_before: float, now: float) -> list[SentOffer]:
        """Pending offers made before ``offered_before`` that have not expired by ``now``."""
        rows = await self._db.pool.fetch(
            "SELECT id, incident_id, caregiver_id, wave, distance_m, eta_s, expires_at"
            " FROM offers WHERE state = 'pending' AND expires_at > $2 AND offered_at <= $1"
            " ORDER BY offered_at",
            ts(offered_before),
            ts(now),
        )
        return [
            SentOffer(
                str(r["id"]),
                str(r["incident_id"]),
                r["caregiver_id"],
                PlannedOffer(
                    r["caregiver_id"],
                    r["wave"],
                    r["distance_m"],
                    r["eta_s"],
                    r["expires_at"].timestamp(),
                ),
            )
            for r in rows
        ]
