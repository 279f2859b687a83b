"""Medication schedules and what became of each dose, in Postgres (migration 7).

A dose's outcome is written once (the first word stands: a dose taken is not missed afterwards,
nor the other way round), keyed by patient and the dose's key (``medication.doses.Dose.key``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from adapters.storage.announcements import Announcement, keep
from adapters.storage.postgres import Database, ts
from medication.administration import day_outcome
from medication.doses import Dose, Schedule, ScheduledDose, doses_between


@dataclass(frozen=True, slots=True)
class Outcome:
    patient_id: str
    dose_key: str
    outcome: str
    at: float
    source: str


@dataclass(frozen=True, slots=True)
class Watched:
    """A schedule to watch: its patient's agency, and since when it stands."""

    agency_id: str
    schedule: Schedule
    since: float


_SCHEDULE = "SELECT patient_id, zone, call_at_fraction, on_time_s, doses FROM medication_schedules"


def dose_subject(patient_id: str, dose_key: str) -> str:
    """The id a dose's announcements are kept under."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"careknot:dose:{patient_id}:{dose_key}"))


class MedicationStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def set_schedule(self, schedule: Schedule, now: float) -> None:
        """The patient's schedule from ``now`` on: doses due before it are not its."""
        await self._write(self._db.pool, schedule, now)

    async def replace_schedule(
        self, schedule: Schedule, now: float, holds: Callable[[Schedule | None], bool]
    ) -> bool:
        """The patient's schedule from ``now`` on, if ``holds`` for the one standing (None:
        none), checked and written in one transaction under a lock on the patient."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('medication:' || $1))", schedule.patient_id
            )
            row = await conn.fetchrow(f"{_SCHEDULE} WHERE patient_id = $1", schedule.patient_id)
            if not holds(None if row is None else _schedule(row)):
                return False
            await self._write(conn, schedule, now)
        return True

    @staticmethod
    async def _write(conn: Any, schedule: Schedule, now: float) -> None:
        doses = [
            {
                "name": d.name,
                "at": d.at.isoformat("seconds" if d.at.second else "minutes"),
                "window_s": d.window_s,
                "critical": d.critical,
            }
            for d in schedule.doses
        ]
        await conn.execute(
            "INSERT INTO medication_schedules(patient_id, zone, call_at_fraction, on_time_s,"
            " doses, updated_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (patient_id)"
            " DO UPDATE SET zone = EXCLUDED.zone, call_at_fraction = EXCLUDED.call_at_fraction,"
            " on_time_s = EXCLUDED.on_time_s, doses = EXCLUDED.doses,"
            " updated_at = EXCLUDED.updated_at",
            schedule.patient_id,
            schedule.zone,
            schedule.call_at_fraction,
            schedule.on_time_s,
            json.dumps(doses),
            ts(now),
        )

    async def schedules(self) -> list[Watched]:
        """Every schedule, with its patient's agency and since when it stands."""
        rows = await self._db.pool.fetch(
            "SELECT s.patient_id, p.agency_id, s.zone, s.call_at_fraction, s.on_time_s, s.doses,"
            " s.updated_at FROM medication_schedules s JOIN patients p ON p.id = s.patient_id"
        )
        return [Watched(r["agency_id"], _schedule(r), r["updated_at"].timestamp()) for r in rows]

    async def schedule(self, patient_id: str) -> Schedule | None:
        row = await self._db.pool.fetchrow(f"{_SCHEDULE} WHERE patient_id = $1", patient_id)
        return None if row is None else _schedule(row)

    async def record(self, outcome: Outcome, announcement: Announcement | None = None) -> bool:
        """Write the dose's outcome, and keep what it tells with it (its subject:
        :func:`dose_subject`); False when it had one already (the first stands)."""
        async with self._db.transaction() as conn:
            done = await conn.fetchval(
                "INSERT INTO dose_outcomes(patient_id, dose_key, outcome, at, source)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1",
                outcome.patient_id,
                outcome.dose_key,
                outcome.outcome,
                ts(outcome.at),
                outcome.source,
            )
            if done is None:
                return False
            subject = dose_subject(outcome.patient_id, outcome.dose_key)
            await keep(conn, subject, announcement, outcome.at)
        return True

    async def outcomes_since(
        self, since: float, patient_id: str | None = None
    ) -> dict[tuple[str, str], Outcome]:
        """Outcomes of doses recorded since ``since`` (of one patient, or of all), by (patient,
        dose key)."""
        rows = await self._db.pool.fetch(
            "SELECT patient_id, dose_key, outcome, at, source FROM dose_outcomes"
            " WHERE at >= $1 AND ($2::text IS NULL OR patient_id = $2)",
            ts(since),
            patient_id,
        )
        return {
            (r["patient_id"], r["dose_key"]): Outcome(
                r["patient_id"], r["dose_key"], r["outcome"], r["at"].timestamp(), r["source"]
            )
            for r in rows
        }

    async def recent_outcomes(self, patient_id: str, up_to_key: str, count: int) -> list[str]:
        """The outcomes of the patient's last ``count`` doses up to the dose ``up_to_key``
        (keys sort as their days and times do), oldest first; a dose a caregiver administered
        is ``taken``."""
        rows = await self._db.pool.fetch(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM dose_administrations a"
            " WHERE a.patient_id = o.patient_id AND a.dose_key = o.dose_key"
            " AND a.action = 'administered') THEN 'taken' ELSE o.outcome END AS outcome"
            " FROM dose_outcomes o WHERE o.patient_id = $1 AND o.dose_key <= $2"
            " ORDER BY o.dose_key DESC LIMIT $3",
            patient_id,
            up_to_key,
            count,
        )
        return [r["outcome"] for r in reversed(rows)]

    async def doses_of_day(self, patient_id: str, day: date) -> list[DayDose]:
        """Each dose the patient's schedule has on ``day`` (in its zone), in time order, with
        what became of it (``medication.administration.day_outcome``): taken, late, missed,
        administered, refused, unavailable or pending. None scheduled: empty."""
        schedule = await self.schedule(patient_id)
        if schedule is None:
            return []
        zone = ZoneInfo(schedule.zone)
        start = datetime.combine(day, time(0, 0), zone).timestamp()
        end = datetime.combine(day + timedelta(days=1), time(0, 0), zone).timestamp()
        doses = doses_between(schedule, start, end)
        keys = [d.key for d in doses]
        outcomes = await self._db.pool.fetch(
            "SELECT dose_key, outcome, at FROM dose_outcomes WHERE patient_id = $1"
            " AND dose_key = ANY($2::text[])",
            patient_id,
            keys,
        )
        entries = await self._db.pool.fetch(
            "SELECT dose_key, action, caregiver_id, visit_id, given_at FROM dose_administrations"
            " WHERE patient_id = $1 AND dose_key = ANY($2::text[]) ORDER BY recorded_at",
            patient_id,
            keys,
        )
        return [_day_dose(d, outcomes, entries) for d in doses]


@dataclass(frozen=True, slots=True)
class DayDose:
    """A dose of the day as a family reads it: what became of it, when, and by whose hand
    when a caregiver logged it (``caregiver_id``, ``visit_id``)."""

    dose_key: str
    name: str
    due_at: float
    critical: bool
    outcome: str
    at: float | None = None
    caregiver_id: str | None = None
    visit_id: str | None = None


def _day_dose(dose: Dose, outcomes: list[asyncpg.Record], entries: list[asyncpg.Record]) -> DayDose:
    recorded = next((r for r in outcomes if r["dose_key"] == dose.key), None)
    logged = [r for r in entries if r["dose_key"] == dose.key]
    outcome = day_outcome(
        None if recorded is None else recorded["outcome"], [r["action"] for r in logged]
    )
    entry = next((r for r in reversed(logged) if r["action"] == outcome), None)
    at = (
        entry["given_at"] if entry is not None else recorded["at"] if recorded is not None else None
    )
    return DayDose(
        dose.key,
        dose.name,
        dose.due_at,
        dose.critical,
        outcome,
        None if at is None else at.timestamp(),
        None if entry is None else entry["caregiver_id"],
        None if entry is None else entry["visit_id"],
    )


def _schedule(r: asyncpg.Record) -> Schedule:
    doses = tuple(
        ScheduledDose(
            d["name"], time.fromisoformat(d["at"]), float(d["window_s"]), bool(d["critical"])
        )
        for d in json.loads(r["doses"])
    )
    return Schedule(
        r["patient_id"],
        doses,
        zone=r["zone"],
        call_at_fraction=r["call_at_fraction"],
        on_time_s=r["on_time_s"],
    )
