"""Alarms in Postgres (``adapters/storage/alarms.py``): one active per source and kind even
against two pools at once, repeats counted, a person's hand audited, the ladder climbed once."""

from __future__ import annotations

import pytest

from adapters.storage.alarms import AlarmStore, StoredAlarm
from adapters.storage.announcements import Announcement
from adapters.storage.postgres import Database
from alarms.ladder import DEFAULT_LADDERS, Ladder, Step
from tests.adapters.scenes import all_done, seed

pytestmark = pytest.mark.servers

T0 = 1_700_000_000.0


async def audit(db: Database, alarm_id: str) -> list[tuple[str, str]]:
    rows = await db.pool.fetch(
        "SELECT kind, actor FROM events WHERE payload->>'alarm_id' = $1 ORDER BY seq", alarm_id
    )
    return [(r["kind"], r["actor"]) for r in rows]


async def test_raises_at_once_from_two_pools_make_one_active_alarm(
    db: Database, db2: Database
) -> None:
    w = await seed(db)
    source = f"device:{w.device.id}"
    one, two = await all_done(
        AlarmStore(db).raise_alarm(w.agency, source, "tamper", "major", T0),
        AlarmStore(db2).raise_alarm(w.agency, source, "tamper", "critical", T0 + 1),
    )
    assert one.id == two.id
    stored = await AlarmStore(db).get(one.id)
    assert stored is not None
    assert (stored.alarm.count, stored.alarm.severity) == (2, "critical")
    assert [k for k, _ in await audit(db, one.id)] == ["alarm_raised", "alarm_repeated"]


async def test_a_cleared_condition_raised_again_is_a_new_alarm(db: Database) -> None:
    w = await seed(db)
    store, source = AlarmStore(db), f"device:{w.device.id}"
    first = await store.raise_alarm(w.agency, source, "offline", "major", T0)
    gone = await store.clear_condition(w.agency, source, "offline", T0 + 60)
    assert gone is not None
    assert (gone.id, gone.alarm.status, gone.alarm.cleared_by) == (
        first.id,
        "cleared_unack",
        "condition",
    )
    assert await store.clear_condition(w.agency, source, "offline", T0 + 61) is None
    second = await store.raise_alarm(w.agency, source, "offline", "major", T0 + 90)
    assert second.id != first.id
    assert second.alarm.count == 1


async def test_a_persons_hand_is_audited_and_kept_to_her_agency(db: Database) -> None:
    w = await seed(db)
    store = AlarmStore(db)
    told: list[StoredAlarm] = []

    def announce(s: StoredAlarm) -> Announcement:
        told.append(s)
        return Announcement()

    alarm = await store.raise_alarm(
        w.agency, f"incident:{w.patient.id}", "incident_escalated", "critical", T0
    )
    assert (
        await store.acknowledge(alarm.id, "elsewhere", "dispatcher:eve", T0 + 1, announce)
        == "other_agency"
    )
    assert (
        await store.acknowledge("nonsense", w.agency, "dispatcher:eve", T0 + 1, announce)
        == "unknown_alarm"
    )
    taken = await store.acknowledge(alarm.id, w.agency, "dispatcher:ann", T0 + 5, announce)
    again = await store.acknowledge(alarm.id, w.agency, "dispatcher:bob", T0 + 6, announce)
    assert isinstance(taken, StoredAlarm) and isinstance(again, StoredAlarm)
    assert again.alarm.acknowledged_by == "dispatcher:ann"  # the first stands, nothing written
    assigned = await store.assign(alarm.id, w.agency, "cg-1", "dispatcher:ann", T0 + 7, announce)
    done = await store.clear(alarm.id, w.agency, "dispatcher:ann", T0 + 9, announce)
    assert isinstance(assigned, StoredAlarm) and isinstance(done, StoredAlarm)
    assert done.alarm.status == "cleared_ack"
    assert [t.alarm.status for t in told] == ["active_ack", "active_ack", "cleared_ack"]
    assert await audit(db, alarm.id) == [
        ("alarm_raised", "rule:incident_escalated"),
        ("alarm_acknowledged", "dispatcher:ann"),
        ("alarm_assigned", "dispatcher:ann"),
        ("alarm_cleared", "dispatcher:ann"),
    ]


async def test_a_rung_is_climbed_once_and_never_after_an_acknowledgement(
    db: Database, db2: Database
) -> None:
    w = await seed(db)
    alarm = await AlarmStore(db).raise_alarm(
        w.agency, f"device:{w.device.id}", "tamper", "critical", T0
    )
    ladder = DEFAULT_LADDERS["critical"]
    due = ladder.due(alarm.alarm, T0 + 25)
    one, two = await all_done(
        AlarmStore(db).climb(alarm, due, T0 + 25), AlarmStore(db2).climb(alarm, due, T0 + 25)
    )
    climbed = [c for c in (one, two) if c is not None]
    assert [c.alarm.climbed for c in climbed] == [2]
    await AlarmStore(db).acknowledge(alarm.id, w.agency, "dispatcher:ann", T0 + 30, None)
    assert (
        await AlarmStore(db).climb(climbed[0], ladder.due(climbed[0].alarm, T0 + 45), T0 + 45)
        is None
    )
    rungs = await db.pool.fetch(
        "SELECT payload->>'rung' AS rung FROM events WHERE payload->>'alarm_id' = $1"
        " AND kind = 'alarm_climbed' ORDER BY seq",
        alarm.id,
    )
    assert [r["rung"] for r in rungs] == ["dispatchers", "on_call"]


async def test_an_agencys_ladders_and_contacts_are_kept(db: Database) -> None:
    w = await seed(db)
    store = AlarmStore(db)
    own = Ladder((Step("dispatchers", 0.0), Step("external", 15.0)))
    await store.set_ladder(w.agency, "critical", own)
    assert await store.ladders(w.agency) == {"critical": own}
    await store.add_contact(w.agency, "on_call", "json://127.0.0.1:1/manager")
    await store.add_contact(w.agency, "on_call", "json://127.0.0.1:1/manager")
    await store.add_contact(w.agency, "external", "mailto://family@example.org")
    assert await store.contacts(w.agency) == {
        "external": ["mailto://family@example.org"],
        "on_call": ["json://127.0.0.1:1/manager"],
    }
