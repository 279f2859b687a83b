"""Who read what (migration 13, ``access_log``): each connection the gateway authenticated to a
recipient's messages, kept once by its record id. Append-only in the database itself: a trigger
refuses every UPDATE, DELETE and TRUNCATE, whoever asks, as it does for the event log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from adapters.storage.postgres import Database, ts
from kernel.contracts import AccessRecord

_INSERT = """
INSERT INTO access_log (record_id, agency_id, role, subject, recipient, patient_id, via, what, at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::timestamptz[])
ON CONFLICT (record_id) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class Read:
    role: str
    subject: str
    agency_id: str
    recipient: str
    via: str
    what: str
    at: float


class AccessLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def keep(self, records: Sequence[AccessRecord]) -> int:
        """Keep the records (one kept before is left as it was); how many were new."""
        if not records:
            return 0
        status = await self._db.pool.execute(
            _INSERT,
            [r.record_id for r in records],
            [r.agency_id for r in records],
            [r.role for r in records],
            [r.subject for r in records],
            [r.recipient for r in records],
            [r.patient_id for r in records],
            [r.via for r in records],
            [r.what for r in records],
            [ts(r.at) for r in records],
        )
        return int(status.rsplit(" ", 1)[1])

    async def of_patient(self, agency_id: str, patient_id: str) -> list[Read]:
        """Who read the patient's messages (her family's channel) or her agency's (its
        dispatchers'), the latest first."""
        rows = await self._db.pool.fetch(
            "SELECT role, subject, agency_id, recipient, via, what, at FROM access_log"
            " WHERE agency_id = $1 AND (patient_id = $2 OR role = 'dispatcher')"
            " ORDER BY seq DESC",
            agency_id,
            patient_id,
        )
        return [
            Read(
                r["role"],
                r["subject"],
                r["agency_id"],
                r["recipient"],
                r["via"],
                r["what"],
                r["at"].timestamp(),
            )
            for r in rows
        ]
