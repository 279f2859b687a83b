"""Medication, kept by the dispatch worker: a dispenser's ``dose_taken`` records its dose taken
(or late), and the offer timer watches every schedule, so that a dose nobody took is told as
missed when its window closes, whatever the dispenser says or does not say (silence is the
signal).

What becomes of a dose is decided by ``medication.doses``; each outcome is written once
(``adapters.storage.medication``) with its ``dose`` frame to the family and the dispatchers in
the transactional outbox. An untaken dose past the part of its window when a person is asked to
look is ``overdue``, an alarm; missed, the alarm is ``dose_missed`` (critical for a critical
medicine), on the patient, until a dose is taken.
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.storage.announcements import Announcement
from adapters.storage.connection import RedisConnection
from adapters.storage.medication import MedicationStore, Outcome, dose_subject
from adapters.storage.postgres import Database
from alarms.lifecycle import Severity
from kernel import recipients
from kernel.contracts import DoseFrame
from kernel.settings import Settings
from medication.doses import Dose, dose_taken_now, doses_between, state_of
from streams.alarm_keeper import AlarmKeeper

LOOK_BACK_S = 26 * 3600.0
"""Doses due this far back are watched (a day, and a window's worth more)."""
OVERDUE, MISSED = "dose_overdue", "dose_missed"


class MedicationKeeper:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        redis: RedisConnection,
        alarms: AlarmKeeper,
        clock: Callable[[], float],
    ) -> None:
        self._store = MedicationStore(db)
        self._announcements = redis.announcements(db, settings)
        self._alarms = alarms
        self._clock = clock
        self._read_every = settings.medication_schedules_read_s
        self._doses: list[tuple[str, Dose]] = []
        self._known: set[tuple[str, str]] = set()
        self._read_at = -self._read_every
        self._overdue: set[tuple[str, str]] = set()

    async def taken(self, agency_id: str, patient_id: str, at: float) -> Dose | None:
        """A dispenser says a dose was taken at ``at``: the dose in its window is taken (or
        late); its alarms clear. None when no dose's window is open."""
        schedule = await self._store.schedule(patient_id)
        if schedule is None:
            return None
        doses = doses_between(schedule, at - LOOK_BACK_S, at + LOOK_BACK_S)
        known = await self._store.outcomes_since(at - LOOK_BACK_S, patient_id)
        done = {key for (_patient, key) in known}
        dose = dose_taken_now(doses, done, at)
        if dose is None:
            return None
        state = state_of(dose, at, at)
        await self._record(agency_id, dose, "late" if state == "late" else "taken", at, "device")
        for kind in (OVERDUE, MISSED):
            await self._alarms.clear(agency_id, f"patient:{patient_id}", kind)
        return dose

    async def tick(self) -> None:
        """Every dose whose window closed untaken is missed; one past its call, overdue. The
        schedules, their doses due from a day back to the next reading, and the outcomes known
        are read every ``medication_schedules_read_s``; a tick only looks at the doses read."""
        now = self._clock()
        if now - self._read_at >= self._read_every:
            await self._read(now)
        for agency_id, dose in self._doses:
            if dose.overdue_at <= now and (dose.patient_id, dose.key) not in self._known:
                await self._watch(agency_id, dose, now)

    async def _read(self, now: float) -> None:
        watched = await self._store.schedules()
        known = await self._store.outcomes_since(now - LOOK_BACK_S - 86400.0)
        until = now + 2 * self._read_every
        self._doses = [
            (w.agency_id, dose)
            for w in watched
            for dose in doses_between(w.schedule, max(now - LOOK_BACK_S, w.since), until)
        ]
        self._known = set(known)
        self._overdue &= {(dose.patient_id, dose.key) for _agency, dose in self._doses}
        self._read_at = now

    async def _watch(self, agency_id: str, dose: Dose, now: float) -> None:
        state = state_of(dose, None, now)
        source = f"patient:{dose.patient_id}"
        if state == "missed":
            if await self._record(agency_id, dose, "missed", now, "window"):
                severity: Severity = "critical" if dose.critical else "major"
                detail = f"{dose.name}, due {_hhmm(dose)}, not taken in its window"
                await self._alarms.raise_(
                    agency_id, source, MISSED, severity, dose.patient_id, detail
                )
                await self._alarms.clear(agency_id, source, OVERDUE)
        elif state == "overdue" and (dose.patient_id, dose.key) not in self._overdue:
            self._overdue.add((dose.patient_id, dose.key))
            detail = f"{dose.name}, due {_hhmm(dose)}, not taken yet"
            await self._alarms.raise_(agency_id, source, OVERDUE, "minor", dose.patient_id, detail)
            await self._tell_now(agency_id, dose, "overdue", now)

    async def _record(
        self, agency_id: str, dose: Dose, outcome: str, at: float, source: str
    ) -> bool:
        frames = _frames(agency_id, dose, outcome, at)
        written = await self._store.record(
            Outcome(dose.patient_id, dose.key, outcome, at, source), Announcement(frames)
        )
        self._known.add((dose.patient_id, dose.key))  # written now, or by another before
        if written:
            await self._announcements.deliver([dose_subject(dose.patient_id, dose.key)], at)
        return written

    async def _tell_now(self, agency_id: str, dose: Dose, outcome: str, at: float) -> None:
        """An overdue dose changes no record: told at once."""
        await self._announcements.tell_now(Announcement(_frames(agency_id, dose, outcome, at)), at)


def _frames(agency_id: str, dose: Dose, outcome: str, at: float) -> list[tuple[str, bytes]]:
    frame = DoseFrame.model_validate(
        {
            "patient_id": dose.patient_id,
            "dose_key": dose.key,
            "name": dose.name,
            "due_at": dose.due_at,
            "outcome": outcome,
            "critical": dose.critical,
            "at": at,
        }
    )
    body = frame.model_dump_json().encode()
    return [
        (recipients.family_of(dose.patient_id), body),
        (recipients.dispatchers(agency_id), body),
    ]


def _hhmm(dose: Dose) -> str:
    return dose.key.split("T", 1)[1].split("/", 1)[0]
