"""Medication on the real Postgres and Redis, the clock the test's: a dose nobody took is told
missed to the family, the dispatchers and the caregiver at hand when its window closes (silence
is the signal), with a critical alarm for a critical medicine or misses that repeat; one the
dispenser says was taken is told taken and clears what was raised; each outcome once. What
dispensers say (jammed, a second attempt, almost empty, refilled) raises and clears its alarms;
an event about a dose never scheduled is parked with its reason. A caregiver on a visit logs a
dose administered, refused or unavailable; the family reads the day's doses."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from adapters import kafka
from adapters.storage.connection import RedisConnection
from adapters.storage.medication import MedicationStore
from adapters.storage.postgres import Database
from adapters.storage.roster import Roster
from dispatch.eligibility import AgencyRules
from kernel import keys, recipients
from kernel.contracts import Administration, AdministrationAction, DeviceEvent, DeviceEventType
from kernel.settings import Settings
from kernel.waiting import poll_until
from medication.doses import Schedule, ScheduledDose
from streams.decoding import Refused
from streams.dispatcher import Dispatcher
from tests.adapters import dead_lettering, scenes
from tests.adapters.dead_lettering import WITHIN_S, dead_letters, produce
from tests.adapters.scenes import Scene, SceneMaker
from tests.support import scrape
from visits.rules import Visit

worker = dead_lettering.worker

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
    family, desk = (
        recipients.family_of(s.w.agency, s.w.patient.id),
        recipients.dispatchers(s.w.agency),
    )
    s.clock.now = at("2026-12-03T08:31")  # past half its window: overdue
    await s.dispatcher.medication.tick()
    s.clock.now = at("2026-12-03T09:00")  # its window closed, nothing said: missed
    await s.dispatcher.medication.tick()
    await s.dispatcher.medication.tick()  # told once
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
    family = recipients.family_of(s.w.agency, s.w.patient.id)
    s.clock.now = at("2026-12-03T09:10")
    taken = s.event(7, kind="dose_taken").model_copy(update={"ts": at("2026-12-03T09:10")})
    await s.dispatcher.on_device_event(taken)  # the statin's window is open: hers
    s.clock.now = at("2026-12-03T09:20")
    await s.dispatcher.medication.tick()  # the statin's window has closed: taken, so not missed
    told = [(f["name"], f["outcome"]) for f in await frames(s, family, "dose")]
    assert ("statin", "late") in told
    assert ("statin", "missed") not in told
    assert ("bisoprolol", "missed") in told  # the heart tablet, long past, was missed


# ---------------------------------------------------------------- what dispensers say


def said(s: Scene, seq: int, kind: DeviceEventType, when: str, **data: Any) -> DeviceEvent:
    """The dispenser's event ``kind`` at 2026-12-03 ``when`` (or a full ISO time)."""
    ts = at(when if "T" in when else f"2026-12-03T{when}")
    s.clock.now = ts
    return s.event(seq, kind=kind).model_copy(update={"ts": ts, "data": data})


async def alarms_now(s: Scene) -> dict[tuple[str, str], tuple[str, str]]:
    """Each alarm's last frame: (source, kind) -> (severity, status)."""
    frames_ = await frames(s, recipients.dispatchers(s.w.agency), "alarm")
    return {(a["source"], a["kind"]): (a["severity"], a["status"]) for a in frames_}


async def test_a_jammed_dispenser_is_an_alarm_until_a_dose_comes_out(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([100])
    await schedule(s, db, at("2026-12-03T07:00"))
    await s.dispatcher.on_device_event(said(s, 1, "dispenser_jam", "08:01"))
    device = f"device:{s.w.device.id}"
    assert (await alarms_now(s))[(device, "dispenser_jam")] == ("major", "active_unack")
    await s.dispatcher.on_device_event(said(s, 2, "dose_taken", "08:20"))
    assert (await alarms_now(s))[(device, "dispenser_jam")] == ("major", "cleared_unack")


async def test_a_second_attempt_at_a_dose_taken_is_an_alarm_and_the_family_is_told(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([100])
    await schedule(s, db, at("2026-12-03T07:00"))
    await s.dispatcher.on_device_event(said(s, 1, "dose_taken", "09:02"))
    await s.dispatcher.on_device_event(said(s, 2, "dose_double_attempt", "09:05"))
    told = [
        (f["name"], f["outcome"])
        for f in await frames(s, recipients.family_of(s.w.agency, s.w.patient.id), "dose")
    ]
    assert told == [("statin", "taken"), ("statin", "double_attempt")]
    patient = f"patient:{s.w.patient.id}"
    assert (await alarms_now(s))[(patient, "dose_double_attempt")] == ("major", "active_unack")


async def test_a_dispenser_almost_empty_72_hours_ahead_is_an_alarm_until_refilled(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([100])
    await schedule(s, db, at("2026-12-03T07:00"))  # two doses a day: six in 72 hours
    patient = f"patient:{s.w.patient.id}"
    await s.dispatcher.on_device_event(said(s, 1, "dose_taken", "09:02", doses_left=6))
    assert (patient, "low_supply") not in await alarms_now(s)
    await s.dispatcher.on_device_event(said(s, 2, "dose_taken", "2026-12-04T08:05", doses_left=5))
    assert (await alarms_now(s))[(patient, "low_supply")] == ("minor", "active_unack")
    await s.dispatcher.on_device_event(
        said(s, 3, "dispenser_refilled", "2026-12-04T10:00", doses_left=28)
    )
    assert (await alarms_now(s))[(patient, "low_supply")] == ("minor", "cleared_unack")


async def test_a_dispenser_that_says_it_is_low_is_believed(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([100])
    await schedule(s, db, at("2026-12-03T07:00"))
    low = said(s, 1, "dispenser_low_supply", "10:00", doses_left=10)  # 5 days by the schedule
    await s.dispatcher.on_device_event(low)
    assert (await alarms_now(s))[(f"patient:{s.w.patient.id}", "low_supply")] == (
        "minor",
        "active_unack",
    )


async def test_an_event_about_a_dose_never_scheduled_is_parked_and_changes_nothing(
    make_scene: SceneMaker, db: Database, settings: Settings, redis: aioredis.Redis
) -> None:
    s = await make_scene([100])
    await schedule(s, db, at("2026-12-03T07:00"))
    parked: list[tuple[str, Refused]] = []

    async def park(topic: str, refused: list[Refused]) -> None:
        parked.extend((topic, r) for r in refused)

    worker = Dispatcher(settings, db, RedisConnection(redis), clock=s.clock, park=park)
    await s.dispatcher.on_device_event(said(s, 1, "dose_missed", "08:59"))  # an alarm stands
    undeclared = [
        said(s, 2, "dose_taken", "12:00"),  # no dose's window is open at noon
        said(s, 3, "dose_taken", "08:20", dose="aspirin"),  # not a medicine of hers
        said(s, 4, "dose_late", "15:00"),
    ]
    for event in undeclared:
        await worker.on_device_event(event)
    assert [(t, r.reason) for t, r in parked] == [("device-events", "undeclared_dose")] * 3
    assert [DeviceEvent.model_validate_json(r.value or b"") for _t, r in parked] == undeclared
    assert worker.medication.undeclared == 3
    assert await frames(s, recipients.family_of(s.w.agency, s.w.patient.id), "dose") == []
    patient = f"patient:{s.w.patient.id}"
    assert (await alarms_now(s))[(patient, "dose_missed")] == ("major", "active_unack")
    taken = said(s, 5, "dose_taken", "08:20")
    await worker.on_device_event(taken)
    await worker.on_device_event(taken)  # Kafka's replay: the same word, not an undeclared one
    assert len(parked) == 3


# ---------------------------------------------------------------- misses that repeat, who is told


async def test_misses_that_repeat_raise_a_critical_alarm(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([100])
    statin = Schedule(s.w.patient.id, (ScheduledDose("statin", time(9, 0)),), zone="UTC")
    await MedicationStore(db).set_schedule(statin, at("2026-12-03T07:00"))
    patient = f"patient:{s.w.patient.id}"
    s.clock.now = at("2026-12-03T09:15")
    await s.dispatcher.medication.tick()
    assert (await alarms_now(s))[(patient, "dose_missed")] == ("major", "active_unack")
    await s.dispatcher.on_device_event(said(s, 1, "dose_taken", "2026-12-04T09:01"))
    assert (await alarms_now(s))[(patient, "dose_missed")] == ("major", "cleared_unack")
    s.clock.now = at("2026-12-05T09:15")
    await s.dispatcher.medication.tick()  # missed, taken, missed: 2 of the last 3
    assert (await alarms_now(s))[(patient, "dose_missed")] == ("critical", "active_unack")


async def test_a_missed_dose_tells_the_caregiver_with_the_visit_nearest_now(
    make_scene: SceneMaker, db: Database, settings: Settings, redis: aioredis.Redis
) -> None:
    s = await make_scene([100, 200, 300])
    await schedule(s, db, at("2026-12-03T07:00"))
    visits = RedisConnection(redis).visit_store(db, settings)
    home = (s.w.patient.lat, s.w.patient.lon)
    await visits.add_visits(
        [
            Visit(
                "v-near",
                s.w.agency,
                s.w.patient.id,
                s.w.cg(1),
                at("2026-12-03T09:30"),
                at("2026-12-03T10:00"),
                *home,
            ),
            Visit(
                "v-far",
                s.w.agency,
                s.w.patient.id,
                s.w.cg(2),
                at("2026-12-03T14:00"),
                at("2026-12-03T15:00"),
                *home,
            ),
        ]
    )
    await Roster(db).add_shift(s.w.cg(0), at("2026-12-03T06:00"), at("2026-12-03T18:00"))
    s.clock.now = at("2026-12-03T09:15")
    await s.dispatcher.medication.tick()
    told = [[(f["name"], f["outcome"]) for f in await s.to_cg(i, "dose")] for i in range(3)]
    assert told == [[], [("bisoprolol", "missed"), ("statin", "missed")], []]


async def test_with_no_visit_near_the_caregivers_on_shift_who_give_medicines_are_told(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([100, 200])
    await schedule(s, db, at("2026-12-03T07:00"))
    roster = Roster(db)
    await db.pool.execute("UPDATE caregivers SET skills = '{medication}' WHERE id = $1", s.w.cg(1))
    for i in range(2):
        await roster.add_shift(s.w.cg(i), at("2026-12-03T06:00"), at("2026-12-03T18:00"))
    await roster.set_rules(s.w.agency, AgencyRules())
    s.clock.now = at("2026-12-03T09:00")
    await s.dispatcher.medication.tick()
    assert [len(await s.to_cg(i, "dose")) for i in range(2)] == [0, 1]


# ---------------------------------------------------------------- the administration log


class Log:
    """A caregiver's entries, as the gateway would forward them."""

    def __init__(self, s: Scene) -> None:
        self.s = s
        self.n = 0

    async def enter(
        self,
        i: int,
        action: AdministrationAction,
        when: str,
        dose: str = "08:00/bisoprolol",
        record_id: str | None = None,
    ) -> str:
        self.n += 1
        self.s.clock.now = at(f"2026-12-03T{when}")
        entry = Administration(
            record_id=record_id or f"r{self.n}",
            caregiver_id=self.s.w.cg(i),
            agency_id=self.s.w.agency,
            patient_id=self.s.w.patient.id,
            dose_key=f"2026-12-03T{dose}",
            action=action,
            given_at=self.s.clock.now,
            at=self.s.clock.now,
        )
        return await self.s.dispatcher.medication_log.on_administration(entry)

    async def results(self, i: int) -> list[tuple[str, str | None]]:
        return [(f["outcome"], f["reason"]) for f in await self.s.to_cg(i, "administration_result")]


async def on_visit(s: Scene, db: Database, settings: Settings, redis: aioredis.Redis) -> None:
    """Caregiver 0 is rostered at the patient's home 07:45 to 08:30."""
    home = (s.w.patient.lat, s.w.patient.lon)
    visit = Visit(
        f"v-{s.w.patient.id}",
        s.w.agency,
        s.w.patient.id,
        s.w.cg(0),
        at("2026-12-03T07:45"),
        at("2026-12-03T08:30"),
        *home,
    )
    await RedisConnection(redis).visit_store(db, settings).add_visits([visit])


async def test_a_dose_administered_on_a_visit_is_told_and_never_missed(
    make_scene: SceneMaker, db: Database, settings: Settings, redis: aioredis.Redis
) -> None:
    s = await make_scene([100])
    await schedule(s, db, at("2026-12-03T07:00"))
    await on_visit(s, db, settings, redis)
    log = Log(s)
    assert await log.enter(0, "administered", "08:10", record_id="same") == "done"
    assert await log.enter(0, "administered", "08:12", record_id="same") == "done"  # sent again
    s.clock.now = at("2026-12-03T09:30")
    await s.dispatcher.medication.tick()  # its window closed: administered, so not missed
    family = [
        (f["name"], f["outcome"], f["visit_id"])
        for f in await frames(s, recipients.family_of(s.w.agency, s.w.patient.id), "dose")
    ]
    assert ("bisoprolol", "administered", f"v-{s.w.patient.id}") in family
    assert ("bisoprolol", "missed", None) not in family
    assert await log.results(0) == [("done", None), ("done", None)]
    rows = await db.pool.fetchval(
        "SELECT count(*) FROM dose_administrations WHERE patient_id = $1", s.w.patient.id
    )
    assert rows == 1


async def test_an_entry_is_refused_off_a_visit_for_a_dose_never_scheduled_or_taken_already(
    make_scene: SceneMaker, db: Database, settings: Settings, redis: aioredis.Redis
) -> None:
    s = await make_scene([100, 200])
    await schedule(s, db, at("2026-12-03T07:00"))
    await on_visit(s, db, settings, redis)
    log = Log(s)
    assert await log.enter(1, "administered", "08:10") == "not_on_visit"  # not her visit
    assert await log.enter(0, "administered", "08:10", dose="08:00/aspirin") == "unscheduled_dose"
    assert await log.enter(0, "administered", "08:40") == "not_on_visit"  # her visit ended
    await s.dispatcher.on_device_event(said(s, 1, "dose_taken", "08:05"))
    assert await log.enter(0, "administered", "08:10") == "already_taken"  # an overdose
    assert await log.results(0) == [
        ("refused", "unscheduled_dose"),
        ("refused", "not_on_visit"),
        ("refused", "already_taken"),
    ]
    assert await log.results(1) == [("refused", "not_on_visit")]
    assert s.dispatcher.medication_log.refused["not_on_visit"] == 2


async def test_the_family_reads_the_days_doses_and_what_became_of_each(
    make_scene: SceneMaker, db: Database, settings: Settings, redis: aioredis.Redis
) -> None:
    s = await make_scene([100])
    await schedule(s, db, at("2026-12-03T07:00"))
    await on_visit(s, db, settings, redis)
    store, log = MedicationStore(db), Log(s)
    day = date(2026, 12, 3)
    assert [d.outcome for d in await store.doses_of_day(s.w.patient.id, day)] == [
        "pending",
        "pending",
    ]
    assert await log.enter(0, "refused", "08:15") == "done"
    refused = [
        (f["name"], f["outcome"])
        for f in await frames(s, recipients.family_of(s.w.agency, s.w.patient.id), "dose")
    ]
    assert refused == [("bisoprolol", "refused")]
    s.clock.now = at("2026-12-03T09:20")
    await s.dispatcher.medication.tick()  # both windows closed: missed
    today = await store.doses_of_day(s.w.patient.id, day)
    assert [(d.name, d.outcome, d.caregiver_id) for d in today] == [
        ("bisoprolol", "refused", s.w.cg(0)),  # why it was missed
        ("statin", "missed", None),
    ]
    assert today[0].visit_id == f"v-{s.w.patient.id}"
    assert today[0].at == at("2026-12-03T08:15")
    assert await store.doses_of_day(f"{s.w.patient.id}-none", day) == []  # no schedule


# ---------------------------------------------------------------- through Kafka, a worker's own


async def test_a_worker_parks_an_undeclared_dose_and_records_a_caregivers_entry(
    settings: Settings, db: Database, redis: aioredis.Redis, worker: Settings
) -> None:
    """A dispatch worker (``careknot worker``) on the real Kafka: a dispenser's ``dose_taken``
    when no dose is due is on the dead-letter topic as ``undeclared_dose`` and counted; a
    caregiver's entry on the answers topic is recorded and answered."""
    await kafka.ensure_topics(settings, keys.TOPICS)
    w, now = await scenes.seed(db, caregivers=1), datetime.now(UTC).timestamp()
    due = datetime.fromtimestamp(now, UTC).time().replace(second=0, microsecond=0)
    doses = Schedule(w.patient.id, (ScheduledDose("metformin", due, window_s=3600.0),), "UTC")
    await MedicationStore(db).set_schedule(doses, now - 3600)
    home = (w.patient.lat, w.patient.lon)
    visit = Visit(f"v-{w.patient.id}", w.agency, w.patient.id, w.cg(0), now - 600, now + 600, *home)
    await RedisConnection(redis).visit_store(db, settings).add_visits([visit])
    stray = DeviceEvent(
        event_id=f"{w.device.id}:1",
        agency_id=w.agency,
        device_id=w.device.id,
        type="dose_taken",
        ts=now,
        seq=1,
        received_at=now,
        data={"dose": "warfarin"},  # not a medicine of hers
    )
    entry = Administration(
        record_id="r1",
        caregiver_id=w.cg(0),
        agency_id=w.agency,
        patient_id=w.patient.id,
        dose_key=f"{datetime.fromtimestamp(now, UTC).date()}T{due.strftime('%H:%M')}/metformin",
        action="administered",
        given_at=now,
        at=now,
    )
    await produce(settings, w.device.id, [stray.model_dump_json().encode()])
    await produce(settings, w.patient.id, [entry.model_dump_json().encode()], keys.OFFER_ANSWERS)

    async def recorded() -> str | None:
        found = await db.pool.fetchval(
            "SELECT action FROM dose_administrations WHERE caregiver_id = $1", w.cg(0)
        )
        return None if found is None else str(found)

    assert await poll_until(recorded, WITHIN_S, "the caregiver's entry") == "administered"
    letters = [d for d in await dead_letters(settings, 1) if w.device.id in d["payload"]]
    assert [(d["reason"], DeviceEvent.model_validate_json(d["payload"])) for d in letters] == [
        ("undeclared_dose", stray)
    ]
    counted = 'careknot_worker_dead_letters_total{reason="undeclared_dose",topic="device-events"}'
    assert counted + " 1.0" in await scrape(worker.dispatch_metrics_port)
    box = RedisConnection(redis).outbox(settings)

    async def told() -> list[tuple[str, str]] | None:
        # the entry is kept, then its result told: the telling may come a moment after
        sent = [orjson.loads(m) for m in await box.since(recipients.caregiver(w.cg(0)), 0)]
        return [(f["type"], f["outcome"]) for f in sent] or None

    answered = await poll_until(told, WITHIN_S, "the caregiver told her entry's result")
    assert answered == [("administration_result", "done")]
