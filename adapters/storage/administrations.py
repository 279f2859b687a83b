"""The medication administration log in Postgres (migration 8): a caregiver's entries, each a
scheduled dose administered, refused or unavailable, on a visit, keyed by her and the entry's
own id (the same entry sent again is recorded once).

An administration given while the dose's window was open also writes the dose's outcome
(``dose_outcomes``: taken or late, source ``caregiver:{id}``) in the same transaction, so the
missed-dose watch counts it as taken; the first outcome still stands.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from adapters.storage.announcements import Announcement, keep
from adapters.storage.postgres import Database, ts


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of the log: ``outcome`` is what it made of the dose (taken, late) or None."""

    caregiver_id: str
    record_id: str
    patient_id: str
    dose_key: str
    action: str
    visit_id: str
    given_at: float
    recorded_at: float
    note: str | None = None
    outcome: str | None = None


def entry_subject(caregiver_id: str, record_id: str) -> str:
    """The id an entry's announcements are kept under."""
    return str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"careknot:administration:{caregiver_id}:{record_id}")
    )


class AdministrationStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, entry: Entry, announcement: Announcement | None = None) -> bool:
        """Write the entry (and, given its ``outcome``, the dose's outcome if it has none),
        keeping what it tells with it (its subject: :func:`entry_subject`); False when the
        entry was recorded before."""
        async with self._db.transaction() as conn:
            done = await conn.fetchval(
                "INSERT INTO dose_administrations(caregiver_id, record_id, patient_id, dose_key,"
                " action, visit_id, given_at, recorded_at, note)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING 1",
                entry.caregiver_id,
                entry.record_id,
                entry.patient_id,
                entry.dose_key,
                entry.action,
                entry.visit_id,
                ts(entry.given_at),
                ts(entry.recorded_at),
                entry.note,
            )
            if done is None:
                return False
            if entry.outcome is not None:
                await conn.execute(
                    "INSERT INTO dose_outcomes(patient_id, dose_key, outcome, at, source)"
                    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    entry.patient_id,
                    entry.dose_key,
                    entry.outcome,
                    ts(entry.given_at),
                    f"caregiver:{entry.caregiver_id}",
                )
            await keep(
                conn,
                entry_subject(entry.caregiver_id, entry.record_id),
                announcement,
                entry.recorded_at,
            )
        return True

    async def entry(self, caregiver_id: str, record_id: str) -> Entry | None:
        """Her entry of that id, if recorded."""
        row = await self._db.pool.fetchrow(
            "SELECT caregiver_id, record_id, patient_id, dose_key, action, visit_id, given_at,"
            " recorded_at, note FROM dose_administrations WHERE caregiver_id = $1"
            " AND record_id = $2",
            caregiver_id,
            record_id,
        )
        if row is None:
            return None
        return Entry(
            row["caregiver_id"],
            row["record_id"],
            row["patient_id"],
            row["dose_key"],
            row["action"],
            row["visit_id"],
            row["given_at"].timestamp(),
            row["recorded_at"].timestamp(),
            row["note"],
        )

    async def taken(self, patient_id: str, dose_key: str) -> bool:
        """Whether the dose was taken: the dispenser said so, or a caregiver administered it."""
        found = await self._db.pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM dose_outcomes WHERE patient_id = $1 AND dose_key = $2"
            " AND outcome IN ('taken', 'late')) OR EXISTS (SELECT 1 FROM dose_administrations"
            " WHERE patient_id = $1 AND dose_key = $2 AND action = 'administered')",
            patient_id,
            dose_key,
        )
        return bool(found)
