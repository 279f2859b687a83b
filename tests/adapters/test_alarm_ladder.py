"""An escalated emergency is an alarm a person must acknowledge: it reaches the dispatchers at
once, climbs to the on-call manager and beyond while nobody acknowledges it (notified through
Apprise to an HTTP endpoint of the test's own), stops when a dispatcher acknowledges it, and
clears when a caregiver accepts. Against the real Postgres and Redis, the clock the test's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from adapters.storage.alarms import AlarmStore
from adapters.storage.medication import MedicationStore
from adapters.storage.postgres import Database
from kernel import recipients
from kernel.contracts import AlarmCommand
from medication.doses import Schedule, ScheduledDose
from tests.adapters.scenes import Scene, SceneMaker, alarms_told
from tests.support import Inbox

pytestmark = pytest.mark.servers


def acknowledge(s: Scene, alarm_id: str, command: str = "acknowledge") -> AlarmCommand:
    return AlarmCommand.model_validate(
        {
            "command_id": uuid.uuid4().hex,
            "command": command,
            "alarm_id": alarm_id,
            "agency_id": s.w.agency,
            "dispatcher_id": "desk-1",
            "at": s.clock.now,
        }
    )


async def test_an_escalated_emergency_climbs_the_ladder_until_a_dispatcher_acknowledges(
    make_scene: SceneMaker, db: Database
) -> None:
    async with Inbox() as inbox:
        s = await make_scene([100], offer_window_by_severity={1: 3600.0})
        store = AlarmStore(db)
        await store.add_contact(s.w.agency, "on_call", inbox.url("manager"))
        await store.add_contact(s.w.agency, "external", inbox.url("sms"))
        incident = await s.dispatcher.on_device_event(s.event())
        assert incident is not None
        s.clock.now += 5
        await s.answer(0, "decline")  # no one else: escalated, a critical alarm
        (raised,) = await alarms_told(s)
        assert (raised["kind"], raised["severity"], raised["status"]) == (
            "incident_escalated",
            "critical",
            "active_unack",
        )
        assert raised["source"] == f"incident:{incident.id}"
        s.clock.now += 1  # (the record keeps microseconds: a rung due at 0 s is surely due at 1)
        await s.dispatcher.tick()  # the first rung, the dispatchers
        assert inbox.posts == []
        s.clock.now += 20
        await s.dispatcher.tick()  # nobody acknowledged: the on-call manager
        (page,) = inbox.to("manager")
        assert raised["alarm_id"] in page["message"]
        assert "critical" in page["title"]
        await s.dispatcher.alarms.on_command(acknowledge(s, raised["alarm_id"]))
        s.clock.now += 60
        await s.dispatcher.tick()  # acknowledged: the ladder stopped
        assert inbox.to("sms") == []
        assert len(inbox.to("manager")) == 1
        told = await alarms_told(s)
        assert [(f["status"], f["climbed"]) for f in told] == [
            ("active_unack", 0),
            ("active_unack", 1),
            ("active_unack", 2),
            ("active_ack", 2),
        ]
        assert told[-1]["acknowledged_by"] == "dispatcher:desk-1"
        results = [
            f
            for f in await s.to(recipients.dispatchers(s.w.agency))
            if f["type"] == "command_result"
        ]
        assert [(r["command"], r["outcome"], r["alarm_id"]) for r in results] == [
            ("acknowledge", "done", raised["alarm_id"])
        ]


async def test_unacknowledged_it_climbs_the_whole_ladder_within_a_minute_then_clears_on_accept(
    make_scene: SceneMaker, db: Database
) -> None:
    async with Inbox() as inbox:
        s = await make_scene([100, 200], offer_window_by_severity={1: 3600.0}, max_waves=1)
        store = AlarmStore(db)
        await store.add_contact(s.w.agency, "on_call", inbox.url("manager"))
        await store.add_contact(s.w.agency, "external", inbox.url("sms"))
        incident = await s.dispatcher.on_device_event(s.event())
        assert incident is not None
        s.clock.now += 5
        await s.answer(0, "decline")  # its waves ran out: escalated; the next, larger, asks her
        (raised,) = await alarms_told(s)
        s.clock.now += 60
        await s.dispatcher.tick()
        assert (len(inbox.to("manager")), len(inbox.to("sms"))) == (1, 1)
        await s.answer(1, "accept")  # she goes: the alarm clears
        told = await alarms_told(s)
        assert [f["status"] for f in told] == ["active_unack", "active_unack", "cleared_unack"]
        stored = await store.get(raised["alarm_id"])
        assert stored is not None
        assert stored.alarm.cleared_by == "condition"


async def test_a_dispatchers_hand_on_an_unknown_or_foreign_alarm_is_refused(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([100])
    assert await s.dispatcher.alarms.on_command(acknowledge(s, "nonsense")) == "unknown_alarm"
    other = await make_scene([100])
    alarm = await AlarmStore(db).raise_alarm(  # another agency's alarm
        other.w.agency, "device:x", "tamper", "major", s.clock.now
    )
    assert await s.dispatcher.alarms.on_command(acknowledge(s, alarm.id, "clear")) == "other_agency"
    assert s.dispatcher.alarms.refused == {"unknown_alarm": 1, "other_agency": 1}


async def test_a_dispensers_events_raise_and_clear_their_alarms(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([100])
    due = datetime.fromtimestamp(s.clock.now, UTC).time().replace(second=0, microsecond=0)
    doses = Schedule(s.w.patient.id, (ScheduledDose("statin", due, window_s=3600.0),), "UTC")
    await MedicationStore(db).set_schedule(doses, s.clock.now - 3600)  # the taken is its dose
    await s.dispatcher.on_device_event(s.event(1, kind="dispenser_tamper"))
    await s.dispatcher.on_device_event(s.event(2, kind="dose_missed"))
    s.clock.now += 60
    await s.dispatcher.on_device_event(s.event(3, kind="dose_missed"))  # the next one, too
    await s.dispatcher.on_device_event(s.event(4, kind="dose_taken"))
    await s.dispatcher.on_device_event(s.event(5, kind="motion"))  # no alarm of its own
    told = [(f["kind"], f["source"], f["status"], f["count"]) for f in await alarms_told(s)]
    assert told == [
        ("tamper", f"device:{s.w.device.id}", "active_unack", 1),
        ("dose_missed", f"patient:{s.w.patient.id}", "active_unack", 1),
        ("dose_missed", f"patient:{s.w.patient.id}", "active_unack", 2),
        ("dose_missed", f"patient:{s.w.patient.id}", "cleared_unack", 2),
    ]
