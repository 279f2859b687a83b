"""The devices worker's watch over each home's routine, on the real Postgres and Redis, the
clock the test's: a resident who moved every 10 minutes of her afternoons for 20 days has not
moved for three hours; her home is retrained on the days before today (a version kept with its
window), the inactivity alarm reaches the dispatchers with its explanation, and, still standing,
asks dispatch for an incident once; she moves and it clears. A dispatcher's "false alarm" is
learnt from; a home with a few days of history is judged by the population prior; a worker
that starts again carries on where the record says.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from adapters.storage import outbox
from adapters.storage.connection import RedisConnection
from adapters.storage.postgres import Database, PatientRow
from adapters.storage.routines import RoutineStore
from kernel import recipients
from kernel.contracts import ROUTINE_MONITOR, AlarmCommand, DeviceEvent
from kernel.settings import Settings
from routines.features import day_bounds, resident_day
from streams.alarm_keeper import AlarmKeeper
from streams.routine_keeper import RoutineKeeper, source_of
from tests.adapters.cli_runs import careknot
from tests.routine_days import devices, write_days

pytestmark = pytest.mark.servers

ZONE = "Europe/London"
NOW = datetime(2026, 11, 18, 14, 0, tzinfo=UTC).timestamp()  # 14:00 in London
STILL_S = 3 * 3600.0
INCIDENT_AFTER_S = 600.0


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@dataclass
class Asked:
    commands: list[AlarmCommand] = field(default_factory=list)

    async def __call__(self, cmd: AlarmCommand) -> None:
        self.commands.append(cmd)


@dataclass
class Home:
    agency: str
    patient: str
    clock: Clock
    asked: Asked
    keeper: RoutineKeeper
    alarms: AlarmKeeper
    box: outbox.Outbox

    async def frames(self, kind: str = "inactivity") -> list[dict[str, Any]]:
        """The alarm frames of ``kind`` her dispatchers were sent (she was last seen in her
        kitchen, so a missed lunch is told beside her stillness)."""
        sent = await self.box.since(recipients.dispatchers(self.agency), 0)
        return [f for f in map(orjson.loads, sent) if f["type"] == "alarm" and f["kind"] == kind]

    def moves(self, at: float, room: str = "kitchen") -> DeviceEvent:
        device = f"{self.patient}-pir-{room}"
        return DeviceEvent(
            event_id=f"{device}:live:{at}",
            agency_id=self.agency,
            device_id=device,
            type="motion",
            ts=at,
            seq=10_000,
            data={"room": room},
            received_at=at,
        )


def keeper_of(
    settings: Settings, db: Database, redis: aioredis.Redis, clock: Clock, asked: Asked
) -> tuple[RoutineKeeper, AlarmKeeper]:
    own = settings.model_copy(
        update={"routine_incident_after_s": INCIDENT_AFTER_S, "routine_retrain_s": 3600.0}
    )
    alarms = AlarmKeeper(own, db, RedisConnection(redis), clock)
    return RoutineKeeper(own, db, alarms, asked, clock), alarms


async def home_of(
    settings: Settings,
    db: Database,
    redis: aioredis.Redis,
    days: int,
    still_s: float = STILL_S,
    quiet_days: int = 0,
) -> Home:
    tag = uuid.uuid4().hex[:8]
    agency, patient = f"rk-{tag}", f"rk-{tag}-p"
    await db.upsert_agency(agency, "Routine Care")
    await db.upsert_patients([PatientRow(patient, agency, "Rose Routine", 53.8, -1.55, ZONE)])
    await db.upsert_devices(devices(agency, patient))
    await write_days(db, agency, patient, ZONE, days, NOW - still_s, quiet_days)
    clock, asked = Clock(NOW), Asked()
    keeper, alarms = keeper_of(settings, db, redis, clock, asked)
    return Home(agency, patient, clock, asked, keeper, alarms, outbox.Outbox(redis, settings))


async def test_a_still_afternoon_raises_an_explained_alarm_then_asks_for_an_incident_once(
    settings: Settings, db: Database, redis: aioredis.Redis
) -> None:
    home = await home_of(settings, db, redis, days=20)
    await home.keeper.tick()

    (raised,) = [f for f in await home.frames() if f["patient_id"] == home.patient]
    assert (raised["kind"], raised["source"]) == ("inactivity", source_of(home.patient))
    assert raised["status"] == "active_unack"
    assert "no movement since 10:5" in raised["detail"]
    assert "of the last 20 days" in raised["detail"]
    assert home.asked.commands == []  # not yet standing long enough

    home.clock.now += INCIDENT_AFTER_S
    await home.keeper.tick()
    await home.keeper.tick()
    (cmd,) = home.asked.commands
    assert (cmd.command, cmd.alarm_id, cmd.agency_id) == (
        "open_incident",
        raised["alarm_id"],
        home.agency,
    )
    assert cmd.dispatcher_id == ROUTINE_MONITOR

    await home.keeper.events([home.moves(home.clock.now)])
    last = (await home.frames())[-1]
    assert (last["alarm_id"], last["status"]) == (raised["alarm_id"], "cleared_unack")
    episodes = {e.kind: e for e in await RoutineStore(db).episodes(home.patient)}
    assert episodes["inactivity"].incident_asked
    assert not episodes["missed_meal"].incident_asked  # a missed meal asks for nobody


async def test_the_model_is_retrained_on_the_days_before_today_and_kept_as_a_version(
    settings: Settings, db: Database, redis: aioredis.Redis
) -> None:
    home = await home_of(settings, db, redis, days=20)
    await home.keeper.tick()
    (kept,) = await RoutineStore(db).versions(home.patient)
    from zoneinfo import ZoneInfo

    today = day_bounds(resident_day(NOW, ZoneInfo(ZONE)), ZoneInfo(ZONE))[0]
    assert kept.window_to == today <= NOW  # no model sees the day it scores
    assert kept.days == 20
    assert kept.events == 20 * (1 + 90 + 2)  # her 20 whole days; today's events are not in it
    await home.keeper.tick()  # the same day: not retrained
    assert len(await RoutineStore(db).versions(home.patient)) == 1

    home.clock.now += 86_400.0  # the next afternoon: retrained once more
    await home.keeper.tick()
    newer, older = await RoutineStore(db).versions(home.patient)
    assert (newer.version, older.version) == (2, 1)
    assert newer.window_to == today + 86_400.0


async def test_a_false_alarm_is_kept_as_a_label_and_learnt_from(
    settings: Settings, db: Database, redis: aioredis.Redis
) -> None:
    home = await home_of(settings, db, redis, days=20)
    await home.keeper.tick()
    (raised,) = [f for f in await home.frames() if f["patient_id"] == home.patient]
    label = AlarmCommand(
        command_id=uuid.uuid4().hex,
        command="false_alarm",
        alarm_id=raised["alarm_id"],
        agency_id=home.agency,
        dispatcher_id="disp-1",
        at=NOW,
    )
    assert await home.alarms.on_command(label) == "done"
    labels = {e.kind: e.label for e in await RoutineStore(db).episodes(home.patient)}
    assert labels["inactivity"] == "false_alarm"
    assert (await home.frames())[-1]["status"] == "cleared_unack"

    home.clock.now += 86_400.0
    await home.keeper.tick()
    newer = (await RoutineStore(db).versions(home.patient))[0]
    assert newer.false_alarms == 1


async def test_a_new_home_is_judged_by_the_population_prior(
    settings: Settings, db: Database, redis: aioredis.Redis
) -> None:
    """Five days of her own are too few: the prior's four hours stand, not her 50 minutes."""
    home = await home_of(settings, db, redis, days=5)
    await home.keeper.tick()
    assert [f for f in await home.frames() if f["patient_id"] == home.patient] == []
    (kept,) = await RoutineStore(db).versions(home.patient)
    assert kept.days == 5

    home.clock.now += 3600.0 + 60.0  # four hours still, in the afternoon
    await home.keeper.tick()
    (raised,) = [f for f in await home.frames() if f["patient_id"] == home.patient]
    assert raised["kind"] == "inactivity"
    assert "of the last" not in raised["detail"]  # the prior has no days of hers to cite


async def test_a_worker_starting_again_carries_on_from_the_record(
    settings: Settings, db: Database, redis: aioredis.Redis
) -> None:
    home = await home_of(settings, db, redis, days=20)
    await home.keeper.tick()
    home.clock.now += INCIDENT_AFTER_S
    await home.keeper.tick()
    assert len(home.asked.commands) == 1

    again, _ = keeper_of(settings, db, redis, home.clock, home.asked)
    home.clock.now += 60.0
    await again.tick()
    frames = [f for f in await home.frames() if f["patient_id"] == home.patient]
    assert [f["count"] for f in frames] == [1]  # not raised again
    assert len(home.asked.commands) == 1  # not asked again
    assert len(await RoutineStore(db).versions(home.patient)) == 1  # its version read back
    watched = again.watched(home.patient)
    assert watched is not None and watched.version == 1

    await again.events([home.moves(home.clock.now, "lounge")])
    assert (await home.frames())[-1]["status"] == "cleared_unack"


async def test_events_of_unregistered_devices_or_unknown_rooms_are_counted_not_taken(
    settings: Settings, db: Database, redis: aioredis.Redis
) -> None:
    home = await home_of(settings, db, redis, days=20)
    await home.keeper.tick()
    stranger = home.moves(NOW).model_copy(update={"device_id": "nobody-pir", "event_id": "x1"})
    nowhere = home.moves(NOW).model_copy(update={"data": {"room": "attic"}, "event_id": "x2"})
    await home.keeper.events([stranger, nowhere])
    assert home.keeper.ignored == {"unregistered_device": 1, "unknown_room": 1}
    # she did not move: the alarm stands
    assert (await home.frames())[-1]["status"] == "active_unack"


async def test_a_week_quieter_than_her_weeks_before_is_kept_for_care_review(
    settings: Settings, db: Database, redis: aioredis.Redis
) -> None:
    quiet = await home_of(settings, db, redis, days=28, quiet_days=7)
    usual = await home_of(settings, db, redis, days=28)
    for home in (quiet, usual):
        await home.keeper.tick()  # retrained: its day began
    (review,) = await RoutineStore(db).reviews(quiet.agency, NOW - 60)
    assert (review.patient_id, review.measure) == (quiet.patient, "activity")
    assert review.recent < review.usual / 2
    assert review.explanation  # words for her carers
    assert await RoutineStore(db).reviews(usual.agency, NOW - 60) == []
    await quiet.keeper.retrain(quiet.patient, NOW)  # the same window again: kept once
    assert len(await RoutineStore(db).reviews(quiet.agency, NOW - 60)) == 1


async def test_the_command_line_shows_a_homes_versions_and_episodes_and_an_agencys_reviews(
    settings: Settings, db: Database, redis: aioredis.Redis
) -> None:
    home = await home_of(settings, db, redis, days=28, quiet_days=7)
    await home.keeper.tick()
    shown = await asyncio.to_thread(careknot, settings, "routines", "show", home.patient)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"{home.patient}: 1 model versions kept, 2 alarm episodes"
    assert "v1 baseline fitted" in lines[1] and "28 days" in lines[1]
    assert any("inactivity (since" in line for line in lines)
    assert any("no movement since 10:55" in line for line in lines)
    reviewed = await asyncio.to_thread(careknot, settings, "routines", "review", home.agency)
    assert reviewed.returncode == 0, reviewed.stderr
    head, *found = reviewed.stdout.splitlines()
    # the clock of the command line is the real one: NOW is in the past, within a year
    assert head == f"{home.agency}: 0 drifts for care review in the last 7 days"
    assert found == []
    year = await asyncio.to_thread(
        careknot, settings, "routines", "review", home.agency, "--days", "3650"
    )
    (one,) = year.stdout.splitlines()[1:]
    assert f"{home.patient} activity:" in one
