"""Medication on the real Postgres and Redis, the clock the test's: a dose nobody took is told
missed to the family and the dispatchers when its window closes (silence is the signal), with a
critical alarm for a critical medicine; one the dispenser says was taken is told taken and
clears what was raised; each outcome once."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

import pytest

from adapters.storage.medication import MedicationStore
from adapters.storage.postgres import Database
from kernel import recipients
from medication.doses import Schedule, ScheduledDose
from tests.adapters import test_stores as stores
from tests.adapters.test_stores import Scene, SceneMaker

make_scene = stores.make_scene

pytestmark = pytest.mark.servers


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


async def frames(s: Scene, recipient: str, kind: str) -> list[dict[str, Any]]:
    return [f for f in await s.to(recipient) if f["type"] == kind]


async def schedule(s: Scene, db: Database, since: float) -> None:
    heart = ScheduledDose("bisoprolol", time(8, 0), window_s=3600.0, critical=True)
    statin = ScheduledDose("statin", time(9, 0), window_s=900.0)
    doses = Schedule(s.w.patient.id, (heart, statin), zone="UTC")
    await MedicationStore(db).set_schedule(doses, since)


async def test_a_dose_nobody_took_is_told_missed_when_its_window_closes(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([100])
    await schedule(s, db, at("2026-12-03T07:00"))  # yesterday's doses were not this schedule's
    family, desk = recipients.family_of(s.w.patient.id), recipients.dispatchers(s.w.agency)
    s.clock.now = at("2026-12-03T08:31")  # past half its window: overdue
    await s.dispatcher.tick()
    s.clock.now = at("2026-12-03T09:00")  # its window closed, nothing said: missed
    await s.dispatcher.tick()
    await s.dispatcher.tick()  # told once
    told = [(f["name"], f["outcome"]) for f in await frames(s, family, "dose")]
    assert told == [("bisoprolol", "overdue"), ("bisoprolol", "missed")]
    assert [(f["name"], f["outcome"]) for f in await frames(s, desk, "dose")] == told
    last = {a["kind"]: (a["severity"], a["status"]) for a in await frames(s, desk, "alarm")}
    assert last == {
        "dose_overdue": ("minor", "cleared_unack"),  # it became missed
        "dose_missed": ("critical", "active_unack"),  # a critical medicine
    }


async def test_a_dose_the_dispenser_says_was_taken_is_told_taken_and_never_missed(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([100])
    await schedule(s, db, at("2026-12-03T07:00"))
    family = recipients.family_of(s.w.patient.id)
    s.clock.now = at("2026-12-03T09:10")
    taken = s.event(7, kind="dose_taken").model_copy(update={"ts": at("2026-12-03T09:10")})
    await s.dispatcher.on_device_event(taken)  # the statin's window is open: hers
    s.clock.now = at("2026-12-03T09:20")
    await s.dispatcher.tick()  # the statin's window has closed: taken, so not missed
    told = [(f["name"], f["outcome"]) for f in await frames(s, family, "dose")]
    assert ("statin", "late") in told
    assert ("statin", "missed") not in told
    assert ("bisoprolol", "missed") in told  # the heart tablet, long past, was missed
