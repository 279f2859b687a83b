"""The devices worker's keeper of device health on the real Postgres and Redis, the clock the
test's: a fall detector whose heartbeats stop is a critical ``device_offline`` alarm told to
the dispatchers, cleared when it is back; its last will is offline at once; a flapping device
raises one ``flapping`` alarm, not an offline one per drop; low battery worsens and clears; a
worker that starts again reads what it knew and gives every device a whole silence; with its
Postgres resetting every connection, a tick still judges the silences, and reads the devices
decommissioned on the next tick that Postgres answers; a health change Postgres refused is
saved by the next tick; a read of the devices decommissioned that Postgres refuses for another
reason than an outage fails the tick, not skipped."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urlsplit

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from adapters.faults import passing
from adapters.storage import outbox
from adapters.storage.connection import RedisConnection
from adapters.storage.postgres import Database, DeviceRow, PatientRow
from careknot.faults.proxy import ProxyThread, TcpProxy
from kernel import recipients
from kernel.contracts import DeviceStatus
from kernel.errors import StorageError
from kernel.settings import Settings
from streams.alarm_keeper import AlarmKeeper
from streams.device_keeper import DeviceKeeper
from tests.support import free_port

pytestmark = pytest.mark.servers

T0 = 1_800_000_000.0
BEAT_S = 10.0  # the device says it beats every 10 s: offline after 30 s of silence


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@dataclass
class Home:
    agency: str
    patient: str
    device: str
    clock: Clock
    keeper: DeviceKeeper
    box: outbox.Outbox

    def status(
        self, what: Literal["heartbeat", "online", "offline"], **reported: Any
    ) -> DeviceStatus:
        return DeviceStatus(
            event_id=f"{self.device}:{what}:{self.clock.now}",
            agency_id=self.agency,
            device_id=self.device,
            status=what,
            received_at=self.clock.now,
            ts=self.clock.now if what == "heartbeat" else None,
            **reported,
        )

    async def says(self, what: Literal["heartbeat", "online", "offline"], **reported: Any) -> None:
        await self.keeper.on_status([self.status(what, **reported)])

    async def beats(self, battery: int = 80) -> None:
        await self.says("heartbeat", battery=battery, interval_s=BEAT_S)

    async def alarms(self) -> list[dict[str, Any]]:
        """The alarm frames its dispatchers were sent, in order."""
        sent = await self.box.since(recipients.dispatchers(self.agency), 0)
        return [f for f in map(orjson.loads, sent) if f["type"] == "alarm"]

    async def last_of_each(self) -> dict[str, tuple[str, str]]:
        """Each alarm kind's last frame: (severity, status)."""
        return {a["kind"]: (a["severity"], a["status"]) for a in await self.alarms()}


async def keeper(
    settings: Settings, db: Database, redis: aioredis.Redis, clock: Clock
) -> DeviceKeeper:
    alarms = AlarmKeeper(settings, db, RedisConnection(redis), clock)
    return DeviceKeeper(settings, db, alarms, clock)


@pytest.fixture
async def home(settings: Settings, db: Database, redis: aioredis.Redis) -> Home:
    """A patient with a fall detector, the keeper's clock at ``T0``."""
    tag = uuid.uuid4().hex[:8]
    agency, patient, device = f"dk-{tag}", f"dk-{tag}-p", f"dk-{tag}-fd"
    await db.upsert_agency(agency, "Device Keeper Care")
    await db.upsert_patients([PatientRow(patient, agency, "Iris", 53.8, -1.55)])
    await db.upsert_devices([DeviceRow(device, agency, patient, "fall_detector")])
    clock = Clock(T0)
    box = outbox.Outbox(redis, settings)
    return Home(agency, patient, device, clock, await keeper(settings, db, redis, clock), box)


async def test_a_fall_detector_whose_heartbeats_stop_is_a_critical_alarm_until_it_is_back(
    home: Home,
) -> None:
    await home.beats()
    home.clock.now = T0 + 3 * BEAT_S - 1
    await home.keeper.tick()
    assert await home.alarms() == []  # not yet: two beats missed, not three
    home.clock.now = T0 + 3 * BEAT_S
    await home.keeper.tick()
    await home.keeper.tick()  # told once
    [offline] = await home.alarms()
    assert (offline["kind"], offline["severity"], offline["status"]) == (
        "device_offline",
        "critical",
        "active_unack",
    )
    assert (offline["source"], offline["patient_id"]) == (f"device:{home.device}", home.patient)
    assert "fall detector" in offline["detail"]

    home.clock.now += 60
    await home.says("online")  # its birth as it comes back
    assert await home.last_of_each() == {"device_offline": ("critical", "cleared_unack")}
    assert {a["alarm_id"] for a in await home.alarms()} == {offline["alarm_id"]}


async def test_its_last_will_is_offline_at_once(home: Home) -> None:
    await home.beats()
    home.clock.now += 1
    await home.says("offline")
    assert await home.last_of_each() == {"device_offline": ("critical", "active_unack")}


async def test_a_flapping_device_raises_one_flapping_alarm_not_an_offline_alarm_per_drop(
    home: Home,
) -> None:
    await home.beats()
    for _ in range(12):  # drops and returns every 20 s, for 4 minutes
        home.clock.now += 10
        await home.says("offline")
        home.clock.now += 10
        await home.says("online")
        await home.beats()
        await home.keeper.tick()
    raised = Counter(a["kind"] for a in await home.alarms() if a["status"] == "active_unack")
    alarms = {(a["kind"], a["alarm_id"]) for a in await home.alarms()}
    assert Counter(kind for kind, _ in alarms) == {"device_offline": 2, "flapping": 1}
    assert raised["flapping"] == 1  # told once, not at every drop
    assert (await home.last_of_each())["flapping"] == ("critical", "active_unack")

    home.clock.now += 600  # it has held still (and beaten) for the settling time
    await home.beats()
    await home.keeper.tick()
    assert (await home.last_of_each())["flapping"] == ("critical", "cleared_unack")


async def test_low_battery_worsens_and_clears_once_charged_past_the_margin(home: Home) -> None:
    for battery in (50, 18, 17, 9, 12, 22, 26):
        home.clock.now += 5
        await home.beats(battery)
    battery_alarms = [a for a in await home.alarms() if a["kind"] == "low_battery"]
    assert [(a["severity"], a["status"], a["count"]) for a in battery_alarms] == [
        ("minor", "active_unack", 1),
        ("major", "active_unack", 2),  # the same alarm, worse
        ("major", "cleared_unack", 2),  # at 26 %: past 20 % and its 5 % margin
    ]


async def test_a_worker_started_again_knows_its_devices_and_gives_them_a_whole_silence(
    home: Home, settings: Settings, db: Database, redis: aioredis.Redis
) -> None:
    await home.beats()
    home.clock.now = T0 + 3600  # the worker was away an hour; what the device sent may follow
    again = await keeper(settings, db, redis, home.clock)
    await again.tick()
    assert await home.alarms() == []
    home.clock.now += 3 * BEAT_S
    await again.tick()
    assert await home.last_of_each() == {"device_offline": ("critical", "active_unack")}


async def test_the_status_of_a_device_not_registered_is_counted_not_watched(home: Home) -> None:
    stranger = home.status("heartbeat", battery=5).model_copy(update={"device_id": "nobody"})
    await home.keeper.on_status([stranger])
    assert home.keeper.unknown == {"nobody": 1}
    assert "nobody" not in await home.keeper.watched()


async def test_a_decommissioned_device_is_let_go_and_what_it_raised_is_cleared(
    home: Home, settings: Settings, db: Database
) -> None:
    await home.beats(battery=5)  # critically low: an alarm stands
    home.clock.now += 1
    await home.says("offline")
    assert await home.last_of_each() == {
        "low_battery": ("major", "active_unack"),
        "device_offline": ("critical", "active_unack"),
    }
    await db.pool.execute("UPDATE devices SET decommissioned_at = now() WHERE id = $1", home.device)
    home.clock.now += settings.device_decommissions_read_s
    await home.keeper.tick()
    assert await home.last_of_each() == {
        "low_battery": ("major", "cleared_unack"),
        "device_offline": ("critical", "cleared_unack"),
    }
    assert home.device not in await home.keeper.watched()
    told = len(await home.alarms())
    home.clock.now += 3600  # silent for an hour: nothing more is raised of it
    await home.keeper.tick()
    await home.says("heartbeat")  # nor of what it still says
    assert len(await home.alarms()) == told
    assert home.device not in await home.keeper.watched()


@contextmanager
def through_a_proxy(settings: Settings) -> Iterator[tuple[ProxyThread, Settings]]:
    """A proxy in front of the session's Postgres, and the settings that reach it through it."""
    dsn = urlsplit(settings.postgres_dsn)
    who = dsn.netloc.rpartition("@")[0]
    with ProxyThread(TcpProxy(free_port(), dsn.port or 5432)) as proxy:
        netloc = f"{who}@127.0.0.1:{proxy.proxy.port}" if who else f"127.0.0.1:{proxy.proxy.port}"
        yield (
            proxy,
            settings.model_copy(update={"postgres_dsn": dsn._replace(netloc=netloc).geturl()}),
        )


async def test_with_postgres_away_the_tick_judges_silences_and_reads_decommissions_next_tick(
    home: Home, settings: Settings, db: Database, redis: aioredis.Redis
) -> None:
    """The keeper's Postgres resets every connection: the read of devices decommissioned is
    skipped and counted, the fall detector gone quiet is still told offline (its alarm kept by
    a Postgres that answers), and the read is made again on the next tick, once it answers."""
    pendant = f"{home.device}-sos"
    await db.upsert_devices([DeviceRow(pendant, home.agency, home.patient, "pendant")])
    with through_a_proxy(settings) as (proxy, through):
        async with Database(through) as far:
            alarms = AlarmKeeper(settings, db, RedisConnection(redis), home.clock)
            keeper = DeviceKeeper(settings, far, alarms, home.clock)
            beat = home.status("heartbeat", battery=80, interval_s=BEAT_S)
            await keeper.on_status([beat, beat.model_copy(update={"device_id": pendant})])
            await keeper.tick()  # the decommissions read at T0
            await db.pool.execute(
                "UPDATE devices SET decommissioned_at = now() WHERE id = $1", pendant
            )
            proxy.set_mode("reset")
            home.clock.now = T0 + max(3 * BEAT_S, settings.device_decommissions_read_s)
            with pytest.raises(StorageError):  # its health not saved, once the silences are judged
                await keeper.tick()
            assert keeper.skipped == {"decommissions": 1}
            told = {(a["source"], a["kind"], a["status"]) for a in await home.alarms()}
            assert (f"device:{home.device}", "device_offline", "active_unack") in told
            assert pendant in await keeper.watched()

            proxy.set_mode("pass")
            await keeper.tick()
            assert keeper.skipped == {"decommissions": 1}
            assert pendant not in await keeper.watched()
            last = {(a["source"], a["kind"]): a["status"] for a in await home.alarms()}
            assert last == {
                (f"device:{home.device}", "device_offline"): "active_unack",
                (f"device:{pendant}", "device_offline"): "cleared_unack",
            }


async def saved_online(db: Database, device_id: str) -> bool | None:
    online: bool | None = await db.pool.fetchval(
        "SELECT online FROM device_health WHERE device_id = $1", device_id
    )
    return online


async def test_a_health_change_postgres_refused_is_saved_by_the_next_tick(
    home: Home, settings: Settings, db: Database, redis: aioredis.Redis
) -> None:
    """Gone quiet while the keeper's Postgres resets every connection: told offline, its
    health not saved; the next tick, with nothing new to judge, saves it, so a worker started
    again reads it offline."""
    with through_a_proxy(settings) as (proxy, through):
        async with Database(through) as far:
            alarms = AlarmKeeper(settings, db, RedisConnection(redis), home.clock)
            far_keeper = DeviceKeeper(settings, far, alarms, home.clock)
            await far_keeper.on_status([home.status("heartbeat", battery=80, interval_s=BEAT_S)])
            await far_keeper.tick()  # the decommissions read at T0
            assert await saved_online(db, home.device) is True

            proxy.set_mode("reset")
            home.clock.now = T0 + 3 * BEAT_S
            with pytest.raises(StorageError):
                await far_keeper.tick()
            assert (await home.last_of_each())["device_offline"] == ("critical", "active_unack")
            assert await saved_online(db, home.device) is True  # not taken

            proxy.set_mode("pass")
            home.clock.now += 1
            await far_keeper.tick()  # nothing changes in memory now
            assert await saved_online(db, home.device) is False
            assert len(await home.alarms()) == 1  # saved, not told again

    again = await keeper(settings, db, redis, home.clock)
    assert not (await again.watched())[home.device].health.online


async def test_a_read_of_decommissions_postgres_refuses_for_a_bug_fails_the_tick(
    home: Home,
) -> None:
    """Not an outage (here a device id Postgres cannot take as text, as a query it refuses
    would): the tick fails with Postgres' own error, every time, and nothing is skipped."""
    await home.beats()
    watched = await home.keeper.watched()
    odd = replace(watched[home.device], device=replace(watched[home.device].device, id="a\x00b"))
    watched[odd.device.id] = odd
    for _ in range(2):
        with pytest.raises(asyncpg.PostgresError) as failed:
            await home.keeper.tick()
        assert not passing(failed.value)
    assert home.keeper.skipped == {}
