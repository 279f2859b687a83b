"""What an agency's HTTP API reads of the dispatch record: its incidents a page at a time (newest
first) and each one's timeline from the append-only event log, and its visit alerts.

Pages are read one row more than asked (the caller's ``limit``), so the caller knows whether
there is a next page; a page starts strictly after the last row of the one before, by the
columns it is ordered on, so rows written meanwhile never shift it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from adapters.storage.postgres import Database, EventRow, ts
from adapters.storage.visit_store import ALERT_COLUMNS, StoredAlert, stored_alert


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    id: str
    agency_id: str
    patient_id: str
    device_id: str | None
    kind: str
    severity: int
    state: str
    assignee_id: str | None
    wave: int
    opened_at: float
    updated_at: float


_INCIDENT = (
    "SELECT id, agency_id, patient_id, device_id, kind, severity, state, assignee_id, wave,"
    " opened_at, updated_at FROM incidents"
)


def _incident(r: asyncpg.Record) -> IncidentRecord:
    return IncidentRecord(
        str(r["id"]),
        r["agency_id"],
        r["patient_id"],
        r["device_id"],
        r["kind"],
        r["severity"],
        r["state"],
        r["assignee_id"],
        r["wave"],
        r["opened_at"].timestamp(),
        r["updated_at"].timestamp(),
    )


class AgencyReads:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def incidents(
        self,
        agency_id: str,
        *,
        states: Sequence[str] = (),
        since: float | None = None,
        until: float | None = None,
        patient_id: str | None = None,
        limit: int,
        before: tuple[float, str] | None = None,
    ) -> list[IncidentRecord]:
        """A page of the agency's incidents, newest first: opened in [``since``, ``until``)
        where given, in any of ``states`` (all when empty), of ``patient_id`` where given, and
        opened before ``before`` (an opening time and an id: the last of the page before)."""
        rows = await self._db.pool.fetch(
            f"{_INCIDENT} WHERE agency_id = $1"
            " AND (cardinality($2::text[]) = 0 OR state = ANY($2::text[]))"
            " AND ($3::timestamptz IS NULL OR opened_at >= $3)"
            " AND ($4::timestamptz IS NULL OR opened_at < $4)"
            " AND ($5::text IS NULL OR patient_id = $5)"
            " AND ($6::timestamptz IS NULL OR (opened_at, id) < ($6, $7::uuid))"
            " ORDER BY opened_at DESC, id DESC LIMIT $8",
            agency_id,
            list(states),
            None if since is None else ts(since),
            None if until is None else ts(until),
            patient_id,
            None if before is None else ts(before[0]),
            None if before is None else uuid.UUID(before[1]),
            limit,
        )
        return [_incident(r) for r in rows]

    async def incident(self, agency_id: str, incident_id: str) -> IncidentRecord | None:
        """The agency's incident; None when there is none (or it is another agency's)."""
        try:
            iid = uuid.UUID(incident_id)
        except ValueError:
            return None
        row = await self._db.pool.fetchrow(
            f"{_INCIDENT} WHERE id = $1 AND agency_id = $2", iid, agency_id
        )
        return None if row is None else _incident(row)

    async def timeline(self, incident: IncidentRecord) -> list[EventRow]:
        """Everything that happened to the incident, oldest first: opened, joined, offered,
        answered, assigned, escalated, resolved."""
        return await self._db.incident_events(incident.id)

    async def visit_alerts(
        self, agency_id: str, *, open_only: bool, limit: int, before: int | None = None
    ) -> list[StoredAlert]:
        """A page of the agency's visit alerts, newest first (those still open alone with
        ``open_only``), raised before the alert ``before`` (the last of the page before)."""
        rows = await self._db.pool.fetch(
            f"SELECT {ALERT_COLUMNS} FROM visit_alerts WHERE agency_id = $1"
            " AND (NOT $2 OR cleared_at IS NULL) AND ($3::bigint IS NULL OR id < $3)"
            " ORDER BY id DESC LIMIT $4",
            agency_id,
            open_only,
            before,
            limit,
        )
        return [stored_alert(r) for r in rows]
