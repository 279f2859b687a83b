"""The medication administration log, kept by the dispatch worker: a caregiver on a visit
records a scheduled dose administered, refused or unavailable (her WebSocket frame, produced by
the gateway to the offer-answers topic keyed by patient).

Whether an entry stands is ``medication.administration``'s to decide, from the schedule, her
visits to the patient (``medication.attendance.visit_now``) and whether the dose was taken
already; the entry, what it makes of the dose (an administration in its window is the dose
taken) and its frames (``dose`` to the family and the dispatchers, ``administration_result``
to her) are written in one transaction (``adapters.storage.administrations``). A refused entry
changes no record: she is told why at once. The same entry again (a resend, Kafka's replay) is
told done again and recorded once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from adapters.storage.administrations import AdministrationStore, Entry, entry_subject
from adapters.storage.announcements import Announcement
from adapters.storage.connection import RedisConnection
from adapters.storage.medication import MedicationStore
from adapters.storage.postgres import Database
from kernel import recipients
from kernel.contracts import Administration, AdministrationResultFrame
from kernel.settings import Settings
from medication.administration import refusal_of, taken_as
from medication.attendance import VISIT_REACH_S, visit_now
from medication.doses import Dose, dose_named
from streams.medication_keeper import MedicationKeeper, dose_frames, spans

log = logging.getLogger(__name__)

DONE = "done"
OTHER_AGENCY = "other_agency"


class MedicationLog:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        redis: RedisConnection,
        keeper: MedicationKeeper,
        clock: Callable[[], float],
    ) -> None:
        self._db = db
        self._log = AdministrationStore(db)
        self._schedules = MedicationStore(db)
        self._visits = redis.visit_store(db, settings)
        self._announcements = redis.announcements(db, settings)
        self._keeper = keeper
        self._clock = clock
        self.refused: Counter[str] = Counter()
        """Entries refused, by reason."""

    async def on_administration(self, entry: Administration) -> str:
        """Record her entry, or refuse it; ``done`` or the reason, told to her."""
        now = self._clock()
        before = await self._log.entry(entry.caregiver_id, entry.record_id)
        if before is not None:
            await self._answer(entry, DONE, before.visit_id, now)
            return DONE
        dose, visit_id, reason = await self._judge(entry, now)
        if reason is not None or dose is None or visit_id is None:
            refusal = reason or "unscheduled_dose"
            self.refused[refusal] += 1
            log.info(
                "administration %s by %s refused: %s", entry.record_id, entry.caregiver_id, refusal
            )
            await self._answer(entry, refusal, None, now)
            return refusal
        await self._record(entry, dose, visit_id, now)
        return DONE

    async def _judge(
        self, entry: Administration, now: float
    ) -> tuple[Dose | None, str | None, str | None]:
        """The dose, her visit now, and why the entry cannot stand (None: it stands)."""
        patient = await self._db.patient(entry.patient_id)
        if patient is None or patient.agency_id != entry.agency_id:
            return None, None, OTHER_AGENCY
        schedule = await self._schedules.schedule(entry.patient_id)
        dose = None if schedule is None else dose_named(schedule, entry.dose_key)
        visits = await self._visits.of_patient(
            entry.patient_id, now - VISIT_REACH_S, now + VISIT_REACH_S
        )
        visit = visit_now(spans(visits), entry.caregiver_id, now)
        taken = dose is not None and await self._log.taken(entry.patient_id, dose.key)
        reason = refusal_of(dose, entry.action, visit is not None, entry.given_at, taken)
        return dose, None if visit is None else visit.visit_id, reason

    async def _record(self, entry: Administration, dose: Dose, visit_id: str, now: float) -> None:
        outcome = taken_as(dose, entry.action, entry.given_at)
        row = Entry(
            entry.caregiver_id,
            entry.record_id,
            entry.patient_id,
            dose.key,
            entry.action,
            visit_id,
            entry.given_at,
            now,
            entry.note,
            outcome,
        )
        frames = dose_frames(entry.agency_id, dose, entry.action, entry.given_at, visit_id=visit_id)
        frames.append(_result(entry, DONE, visit_id, now))
        if await self._log.record(row, Announcement(frames)):
            await self._announcements.deliver(
                [entry_subject(entry.caregiver_id, entry.record_id)], now
            )
        if entry.action == "administered":
            await self._keeper.taken_clears(entry.agency_id, entry.patient_id)

    async def _answer(
        self, entry: Administration, outcome: str, visit_id: str | None, now: float
    ) -> None:
        """What changes no record is told at once."""
        await self._announcements.tell_now(
            Announcement([_result(entry, outcome, visit_id, now)]), now
        )


def _result(
    entry: Administration, outcome: str, visit_id: str | None, now: float
) -> tuple[str, bytes]:
    frame = AdministrationResultFrame(
        record_id=entry.record_id,
        patient_id=entry.patient_id,
        dose_key=entry.dose_key,
        action=entry.action,
        outcome="done" if outcome == DONE else "refused",
        reason=None if outcome == DONE else outcome,
        visit_id=visit_id,
        at=now,
    )
    return recipients.caregiver(entry.caregiver_id), frame.model_dump_json().encode()
