"""Medication, kept by the dispatch worker: what dispensers say (a dose taken, due, late, tried
twice; jammed, almost empty, refilled), and a timer of its own watching every schedule, so that a
dose nobody took is told as missed when its window closes, whatever the dispenser says or does
not say (silence is the signal).

What becomes of a dose is decided by ``medication.doses``; each outcome is written once
(``adapters.storage.medication``) with its ``dose`` frame in the transactional outbox. An
untaken dose past the part of its window when a person is asked to look is ``overdue``, an
alarm; missed, the alarm is ``dose_missed`` (critical for a critical medicine or misses that
repeat, ``medication.adherence``), on the patient, until a dose is taken; the family, the
dispatchers and the caregiver at hand (``medication.attendance``) are told. A dispenser event
about a dose the schedule never had is refused as :data:`UNDECLARED` (the caller dead-letters
it); a dispenser's ``doses_left`` is checked against its schedule 72 hours ahead
(``medication.supply``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from adapters.storage.announcements import Announcement
from adapters.storage.connection import RedisConnection
from adapters.storage.medication import MedicationStore, Outcome, dose_subject
from adapters.storage.postgres import Database
from adapters.storage.roster import Roster
from alarms.rules import LOW_SUPPLY
from dispatch.eligibility import NEEDS
from kernel import recipients
from kernel.contracts import DoseFrame, DoseOutcome
from kernel.settings import Settings
from medication.adherence import RECENT_DOSES, miss_severity, missed_repeatedly
from medication.attendance import VISIT_REACH_S, OnShift, VisitSpan, caregivers_to_tell
from medication.doses import Dose, dose_in_window, dose_taken_now, doses_between, state_of
from medication.supply import runs_out_at
from streams.alarm_keeper import AlarmKeeper
from visits.rules import VisitRecord

LOOK_BACK_S = 26 * 3600.0
"""Doses due this far back are watched (a day, and a window's worth more)."""
OVERDUE, MISSED = "dose_overdue", "dose_missed"
UNDECLARED = "undeclared_dose"
"""The reason a dispenser event about a dose that was never scheduled is refused."""
DOSE_EVENTS = frozenset({"dose_taken", "dose_due", "dose_late", "dose_double_attempt"})
"""Dispenser events about one dose: each must fall in a scheduled dose's window."""
DISPENSER_EVENTS = DOSE_EVENTS | {
    "dose_missed",
    "dispenser_tamper",
    "dispenser_jam",
    "dispenser_low_supply",
    "dispenser_refilled",
}
GIVES_MEDICINES = NEEDS["dose_missed"]


def spans(records: Iterable[VisitRecord]) -> list[VisitSpan]:
    return [
        VisitSpan(r.visit.visit_id, r.visit.caregiver_id, r.visit.start, r.visit.end, r.state)
        for r in records
    ]


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
        self._visits = redis.visit_store(db, settings)
        self._roster = Roster(db)
        self._announcements = redis.announcements(db, settings)
        self._alarms = alarms
        self._clock = clock
        self._read_every = settings.medication_schedules_read_s
        self._doses: list[tuple[str, Dose]] = []
        self._known: set[tuple[str, str]] = set()
        self._read_at = -self._read_every
        self._overdue: set[tuple[str, str]] = set()
        self.undeclared = 0
        """Dispenser events refused as about no scheduled dose."""

    # ------------------------------------------------------------ what dispensers say

    async def device_event(
        self,
        agency_id: str,
        patient_id: str,
        device_id: str,
        kind: str,
        at: float,
        data: Mapping[str, Any],
    ) -> str | None:
        """A dispenser's event: its dose (if it is about one), the alarms its kind raises or
        clears (``alarms.rules``) and its supply (given ``doses_left``). The reason it is
        refused (:data:`UNDECLARED`: no scheduled dose is about), or None; a refused event
        changes no dose and clears nothing, but a second attempt is an alarm whatever."""
        refused = None
        if kind in DOSE_EVENTS:
            refused = await self._dose_event(agency_id, patient_id, kind, at, data)
        if refused is None or kind == "dose_double_attempt":
            await self._alarms.device_event(agency_id, patient_id, device_id, kind)
        left = data.get("doses_left")
        if isinstance(left, int) and not isinstance(left, bool):
            await self._supply(agency_id, patient_id, left, at, kind == "dispenser_low_supply")
        if refused is not None:
            self.undeclared += 1
        return refused

    async def _dose_event(
        self, agency_id: str, patient_id: str, kind: str, at: float, data: Mapping[str, Any]
    ) -> str | None:
        schedule = await self._store.schedule(patient_id)
        doses = (
            [] if schedule is None else doses_between(schedule, at - LOOK_BACK_S, at + LOOK_BACK_S)
        )
        name = data.get("dose")
        if isinstance(name, str):
            doses = [d for d in doses if d.name == name]
        dose = dose_in_window(doses, at)
        if dose is None:
            return UNDECLARED
        known = await self._store.outcomes_since(at - LOOK_BACK_S, patient_id)
        if kind == "dose_taken":
            await self._taken(agency_id, doses, {k for _p, k in known}, at)
        elif kind == "dose_late" and (patient_id, dose.key) not in known:
            await self._overdue_now(agency_id, dose, at)
        elif kind == "dose_double_attempt":
            taken = {k for (_p, k), o in known.items() if o.outcome in ("taken", "late")}
            tried = dose_in_window(doses, at, taken)
            if tried is None:
                return UNDECLARED  # no dose taken in this window: not a second attempt at one
            await self._tell_now(agency_id, tried, "double_attempt", at)
        return None

    async def taken(self, agency_id: str, patient_id: str, at: float) -> Dose | None:
        """A dispenser says a dose was taken at ``at``: the dose in its window is taken (or
        late); its alarms clear. None when no untaken dose's window is open."""
        schedule = await self._store.schedule(patient_id)
        if schedule is None:
            return None
        doses = doses_between(schedule, at - LOOK_BACK_S, at + LOOK_BACK_S)
        known = await self._store.outcomes_since(at - LOOK_BACK_S, patient_id)
        return await self._taken(agency_id, doses, {k for _p, k in known}, at)

    async def _taken(
        self, agency_id: str, doses: list[Dose], done: set[str], at: float
    ) -> Dose | None:
        dose = dose_taken_now(doses, done, at)
        if dose is None:
            return None  # taken already: the same word again
        state = state_of(dose, at, at)
        await self._record(agency_id, dose, "late" if state == "late" else "taken", at, "device")
        await self.taken_clears(agency_id, dose.patient_id)
        return dose

    async def taken_clears(self, agency_id: str, patient_id: str) -> None:
        """A dose was taken: the patient's dose alarms clear."""
        for kind in (OVERDUE, MISSED):
            await self._alarms.clear(agency_id, f"patient:{patient_id}", kind)

    async def _supply(
        self, agency_id: str, patient_id: str, left: int, at: float, said_low: bool
    ) -> None:
        """Almost empty 72 hours ahead: a minor alarm; enough, it clears (unless the dispenser
        itself says it is low)."""
        schedule = await self._store.schedule(patient_id)
        if schedule is None:
            return
        source = f"patient:{patient_id}"
        out = runs_out_at(schedule, left, at)
        if out is not None:
            detail = f"{left} doses left: it runs out within 72 hours"
            await self._alarms.raise_(agency_id, source, LOW_SUPPLY, "minor", patient_id, detail)
        elif not said_low:
            await self._alarms.clear(agency_id, source, LOW_SUPPLY)

    # ------------------------------------------------------------ the watch

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
        if state == "missed":
            await self._missed(agency_id, dose, now)
        elif state == "overdue":
            await self._overdue_now(agency_id, dose, now)

    async def _missed(self, agency_id: str, dose: Dose, now: float) -> None:
        """Told to the family, the dispatchers and the caregiver at hand; its alarm raised."""
        caregivers = await self._at_hand(agency_id, dose.patient_id, now)
        if not await self._record(agency_id, dose, "missed", now, "window", caregivers):
            return
        recent = await self._store.recent_outcomes(dose.patient_id, dose.key, RECENT_DOSES)
        detail = f"{dose.name}, due {_hhmm(dose)}, not taken in its window"
        if missed_repeatedly(recent):
            detail += f"; {recent.count('missed')} of the last {len(recent)} doses missed"
        source = f"patient:{dose.patient_id}"
        severity = miss_severity(dose, recent)
        await self._alarms.raise_(agency_id, source, MISSED, severity, dose.patient_id, detail)
        await self._alarms.clear(agency_id, source, OVERDUE)

    async def _overdue_now(self, agency_id: str, dose: Dose, now: float) -> None:
        if (dose.patient_id, dose.key) in self._overdue:
            return
        self._overdue.add((dose.patient_id, dose.key))
        detail = f"{dose.name}, due {_hhmm(dose)}, not taken yet"
        source = f"patient:{dose.patient_id}"
        await self._alarms.raise_(agency_id, source, OVERDUE, "minor", dose.patient_id, detail)
        await self._tell_now(agency_id, dose, "overdue", now)

    async def _at_hand(self, agency_id: str, patient_id: str, now: float) -> tuple[str, ...]:
        """The caregivers told of the patient's missed dose (``medication.attendance``)."""
        visits = await self._visits.of_patient(patient_id, now - VISIT_REACH_S, now + VISIT_REACH_S)
        on_shift = [
            OnShift(cid, skills >= GIVES_MEDICINES)
            for cid, skills in (await self._roster.on_shift(agency_id, now)).items()
        ]
        return caregivers_to_tell(spans(visits), on_shift, now)

    # ------------------------------------------------------------ telling

    async def _record(
        self,
        agency_id: str,
        dose: Dose,
        outcome: DoseOutcome,
        at: float,
        source: str,
        caregivers: Iterable[str] = (),
    ) -> bool:
        frames = dose_frames(agency_id, dose, outcome, at, caregivers=caregivers)
        written = await self._store.record(
            Outcome(dose.patient_id, dose.key, outcome, at, source), Announcement(frames)
        )
        self._known.add((dose.patient_id, dose.key))  # written now, or by another before
        if written:
            await self._announcements.deliver([dose_subject(dose.patient_id, dose.key)], at)
        return written

    async def _tell_now(self, agency_id: str, dose: Dose, outcome: DoseOutcome, at: float) -> None:
        """What changes no record (an overdue dose, a second attempt) is told at once."""
        frames = dose_frames(agency_id, dose, outcome, at)
        await self._announcements.tell_now(Announcement(frames), at)


def dose_frames(
    agency_id: str,
    dose: Dose,
    outcome: DoseOutcome,
    at: float,
    *,
    visit_id: str | None = None,
    caregivers: Iterable[str] = (),
) -> list[tuple[str, bytes]]:
    """The ``dose`` frame to the patient's family, the agency's dispatchers and ``caregivers``."""
    frame = DoseFrame(
        patient_id=dose.patient_id,
        dose_key=dose.key,
        name=dose.name,
        due_at=dose.due_at,
        outcome=outcome,
        critical=dose.critical,
        visit_id=visit_id,
        at=at,
    )
    body = frame.model_dump_json().encode()
    told = [recipients.family_of(agency_id, dose.patient_id), recipients.dispatchers(agency_id)]
    told += [recipients.caregiver(c) for c in caregivers]
    return [(r, body) for r in told]


def _hhmm(dose: Dose) -> str:
    return dose.key.split("T", 1)[1].split("/", 1)[0]
