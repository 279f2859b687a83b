"""Offer windows per severity, and a worker's recovery, against the real Postgres and Redis.

A dead worker is the state it leaves behind: rows written by a dispatcher (or by the stores
directly, for a worker that stopped halfway through a step) and a clock moved on while no
dispatcher ran. Then a new dispatcher on a new pool starts (``resume``), or a live one ticks.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.storage.connection import RedisConnection
from adapters.storage.incidents import IncidentRow, IncidentStore, Trigger
from adapters.storage.offers import OfferStore
from adapters.storage.postgres import Database
from dispatch.model import PlannedOffer
from dispatch.offers import ESCALATE_AFTER_S, JOIN_WINDOW_S, STALLED_AFTER_S
from kernel.settings import Settings
from streams.dispatcher import Dispatcher
from streams.runtime import Runtime
from tests.adapters import scenes
from tests.adapters.scenes import Scene, SceneMaker, event_kinds, open_incident

pytestmark = pytest.mark.servers

RECORD_TTL_S = 3600  # an offer record outlives its window by this much


@asynccontextmanager
async def restarted(
    s: Scene, settings: Settings, redis: aioredis.Redis, **changes: Any
) -> AsyncIterator[Dispatcher]:
    """A new worker: its own pool, the scene's clock, no memory of the one that died."""
    async with Database(settings) as pool:
        yield Dispatcher(
            settings.model_copy(update=changes), pool, RedisConnection(redis), clock=s.clock
        )


async def incident_row(db: Database, incident_id: str) -> IncidentRow:
    row = await IncidentStore(db).get(incident_id)
    assert row is not None
    return row


async def times_offered(db: Database, incident_id: str) -> dict[str, int]:
    rows = await db.pool.fetch(
        "SELECT caregiver_id, count(*) AS n FROM offers WHERE incident_id = $1 GROUP BY 1",
        uuid.UUID(incident_id),
    )
    return {r["caregiver_id"]: r["n"] for r in rows}


async def escalations(db: Database, incident_id: str) -> list[str]:
    events = await db.incident_events(incident_id)
    return [str(e.payload["reason"]) for e in events if e.kind == "incident_escalated"]


async def outcomes(s: Scene, i: int) -> list[str]:
    return [f["outcome"] for f in await s.to_cg(i, "offer_result")]


async def assert_expires(
    db: Database, redis: aioredis.Redis, settings: Settings, offer_id: str, at: float, now: float
) -> None:
    """Postgres and the gateway's offer record in Redis agree the offer expires ``at``; the
    record outlives it by an hour from ``now``."""
    stored = await db.pool.fetchval(
        "SELECT extract(epoch FROM expires_at) FROM offers WHERE id = $1", uuid.UUID(offer_id)
    )
    assert float(stored) == pytest.approx(at, abs=0.001)
    key = settings.keys.offer(offer_id)
    recorded = await redis.hget(key, "expires_at")
    assert recorded is not None
    assert float(recorded) == pytest.approx(at, abs=0.001)
    assert at - now + RECORD_TTL_S - 2 <= await redis.ttl(key) <= at - now + RECORD_TTL_S


# ---------------------------------------------------------------- the window of each severity


async def test_an_offers_expiry_in_postgres_and_redis_is_its_severitys_window(
    make_scene: SceneMaker, db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    windows = {"offer_window_by_severity": {1: 12.0}, "offer_window_s": 70.0}
    fall = await make_scene([100, 200], **windows)
    await fall.dispatcher.on_device_event(fall.event())
    (offer,) = await fall.to_cg(0, "offer")
    assert offer["expires_at"] == pytest.approx(fall.clock.now + 12.0)
    await assert_expires(
        db, redis, settings, offer["offer_id"], fall.clock.now + 12.0, fall.clock.now
    )

    # a missed dose (severity 3, no window of its own) gets the default window
    dose = await make_scene([100, 200], **windows)
    incident = await open_incident(db, dose.w, dose.clock.now, "dose_missed", severity=3)
    await dose.dispatcher.resume()
    (offer,) = await dose.to_cg(0, "offer")
    assert offer["incident"]["severity"] == 3
    await assert_expires(
        db, redis, settings, offer["offer_id"], dose.clock.now + 70.0, dose.clock.now
    )

    # a fall from the same home joins it and makes it urgent: the next wave is a fall's
    dose.clock.now += 5
    joined = await dose.dispatcher.on_device_event(dose.event(kind="fall"))
    assert joined is not None
    assert (joined.id, joined.severity) == (incident.id, 1)
    await dose.answer(0, "decline")
    (offer,) = await dose.to_cg(1, "offer")
    await assert_expires(
        db, redis, settings, offer["offer_id"], dose.clock.now + 12.0, dose.clock.now
    )


async def test_the_time_rule_escalates_when_the_severitys_waves_would_be_over(
    make_scene: SceneMaker, db: Database
) -> None:
    """Two 10 s waves for a fall: escalated 20 s after opening, though the second wave,
    offered late by a slow timer, still stands; a severity-3 incident waits the full 40 s."""
    s = await make_scene([100, 200, 300], offer_window_by_severity={1: 10.0}, max_waves=2)
    opened = s.clock.now
    fall = await s.dispatcher.on_device_event(s.event())
    assert fall is not None
    slow = await make_scene([100], offer_window_by_severity={1: 10.0}, max_waves=2)
    slow.clock.now = opened
    dose = await open_incident(db, slow.w, opened, "dose_missed", severity=3)
    await slow.dispatcher.resume()

    s.clock.now = opened + 19.5
    await s.dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)
    assert await s.offered() == [1, 1, 0]
    assert (await incident_row(db, fall.id)).state == "offered"
    s.clock.now = opened + 20.0
    await s.dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)
    assert (await incident_row(db, fall.id)).state == "escalated"
    assert await escalations(db, fall.id) == ["timeout"]
    assert (await incident_row(db, dose.id)).state == "offered"  # 45 s windows: 40 s for it

    s.clock.now = opened + ESCALATE_AFTER_S
    await s.dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)
    assert (await incident_row(db, dose.id)).state == "escalated"


# ---------------------------------------------------------------- a worker restarted


async def test_a_wave_that_expired_while_no_worker_ran_goes_to_the_next_caregiver(
    make_scene: SceneMaker, db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    s = await make_scene([100, 200, 300], offer_window_by_severity={1: 20.0})
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    s.clock.now += 25  # the worker died; her offer's window ran out with no one watching
    async with restarted(s, settings, redis, offer_window_by_severity={1: 20.0}) as worker:
        await worker.resume()
    assert await outcomes(s, 0) == ["expired"]
    assert await s.offered() == [1, 1, 0]
    assert (await incident_row(db, incident.id)).state == "offered"
    assert await times_offered(db, incident.id) == {s.w.cg(0): 1, s.w.cg(1): 1}


async def test_a_starting_worker_moves_on_what_fell_due_while_none_ran(
    make_scene: SceneMaker, db: Database, settings: Settings
) -> None:
    """The worker's own start (``Runtime.ready``), on the real clock."""
    s = await make_scene([100, 200])
    s.clock.now -= 30  # the fall came 30 s ago; the worker offered it to her, then died
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    assert await s.offered() == [1, 0]
    rt = Runtime(settings)
    try:
        await rt.ready()
    finally:
        await rt.close()
    assert await outcomes(s, 0) == ["expired"]  # her 20 s ran out 10 s ago
    assert await s.offered() == [1, 1]
    assert await times_offered(db, incident.id) == {s.w.cg(0): 1, s.w.cg(1): 1}


async def test_an_incident_left_past_its_escalation_time_escalates_and_its_waves_go_on(
    make_scene: SceneMaker, db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    s = await make_scene([100, 200, 300], offer_window_by_severity={1: 20.0})
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    s.clock.now += 100  # no worker for 100 s
    for _restart in range(2):  # a second restart changes nothing
        async with restarted(s, settings, redis, offer_window_by_severity={1: 20.0}) as worker:
            await worker.resume()
        assert (await incident_row(db, incident.id)).state == "escalated"
        assert await escalations(db, incident.id) == ["timeout"]
        assert await s.offered() == [1, 1, 0]
    assert await times_offered(db, incident.id) == {s.w.cg(0): 1, s.w.cg(1): 1}


async def test_a_last_wave_that_expired_while_no_worker_ran_escalates(
    make_scene: SceneMaker, db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    s = await make_scene([100, 200], offer_window_by_severity={1: 20.0}, max_waves=1)
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    s.clock.now += 21
    async with restarted(
        s, settings, redis, offer_window_by_severity={1: 20.0}, max_waves=1
    ) as worker:
        await worker.resume()
    assert (await incident_row(db, incident.id)).state == "escalated"
    assert await escalations(db, incident.id) == ["no_acceptance"]
    assert await s.offered() == [1, 1]  # and the waves go on


async def test_an_escalated_incident_whose_wave_closed_unattended_gets_its_next_wave(
    make_scene: SceneMaker, db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    s = await make_scene([100, 200, 300], offer_window_by_severity={1: 45.0})
    opened = s.clock.now
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    s.clock.now = opened + ESCALATE_AFTER_S
    await s.dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)
    s.clock.now = opened + 46
    await OfferStore(db).expire_due(s.clock.now)  # the timer expired her offer, then died
    assert (await incident_row(db, incident.id)).state == "escalated"
    assert await s.offered() == [1, 0, 0]
    async with restarted(s, settings, redis, offer_window_by_severity={1: 45.0}) as worker:
        await worker.resume()
    assert await s.offered() == [1, 1, 1]  # its next wave, twice the size
    assert (await incident_row(db, incident.id)).state == "escalated"
    assert await times_offered(db, incident.id) == {s.w.cg(i): 1 for i in range(3)}


async def test_offers_recorded_but_never_sent_are_delivered_once(
    make_scene: SceneMaker, db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    s = await make_scene([100, 200])
    opened = s.clock.now
    incident = await open_incident(db, s.w, opened)
    planned = [PlannedOffer(s.w.cg(0), 1, 100.0, 60.0, opened + 20.0)]
    (sent,) = await IncidentStore(db).start_wave(incident, planned, opened) or []
    s.clock.now += 5  # the worker died after recording the wave, before telling anyone
    assert await s.offered() == [0, 0]
    for _restart in range(2):
        async with restarted(s, settings, redis) as worker:
            await worker.resume()
        (offer,) = await s.to_cg(0, "offer")
        assert offer["offer_id"] == sent.offer_id
        assert offer["expires_at"] == pytest.approx(opened + 20.0)
    assert await s.offered() == [1, 0]
    await assert_expires(db, redis, settings, sent.offer_id, opened + 20.0, s.clock.now)
    await s.answer(0, "accept")  # the gateway knows the offer: she can take it
    assert (await incident_row(db, incident.id)).state == "assigned"


async def test_two_workers_starting_at_once_make_one_wave(
    make_scene: SceneMaker, db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    s = await make_scene([100, 200, 300], offer_window_by_severity={1: 20.0}, offer_wave_size=2)
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    s.clock.now += 21
    async with (
        restarted(s, settings, redis, offer_window_by_severity={1: 20.0}, offer_wave_size=2) as one,
        restarted(s, settings, redis, offer_window_by_severity={1: 20.0}, offer_wave_size=2) as two,
    ):
        await scenes.all_done(one.resume(), two.resume())
    assert await s.offered() == [1, 1, 1]
    assert await times_offered(db, incident.id) == {s.w.cg(i): 1 for i in range(3)}
    assert (await incident_row(db, incident.id)).wave == 2


# ---------------------------------------------------------------- a live worker's timer


async def test_the_timer_moves_on_incidents_a_worker_dropped_halfway(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([100, 200, 300], offer_window_by_severity={1: 3600.0})
    ev = s.event()
    trigger = Trigger(
        ev.event_id, s.w.agency, s.w.patient.id, s.w.device.id, "fall", 1, s.clock.now
    )
    # a worker opened the incident and died before its first wave; the event's replay finds
    # it already seen
    opened = await IncidentStore(db).open_or_join(trigger, JOIN_WINDOW_S)
    assert opened is not None
    assert await s.dispatcher.on_device_event(ev) is None
    await s.dispatcher.tick()
    assert await s.offered() == [0, 0, 0]  # another worker may be about to make the wave
    s.clock.now += STALLED_AFTER_S
    await s.dispatcher.tick()
    assert await s.offered() == [1, 0, 0]

    # a worker recorded her decline and died before the next wave
    (offer,) = await s.to_cg(0, "offer")
    s.clock.now += 1
    declined = await OfferStore(db).decline(offer["offer_id"], s.w.cg(0), None, s.clock.now)
    assert declined is not None
    assert declined.wave_closed
    await s.dispatcher.tick()
    assert await s.offered() == [1, 0, 0]
    s.clock.now += STALLED_AFTER_S
    await s.dispatcher.tick()
    assert await s.offered() == [1, 1, 0]
    assert await times_offered(db, opened.incident.id) == {s.w.cg(0): 1, s.w.cg(1): 1}
    assert await event_kinds(db, opened.incident.id) == [
        "incident_opened",
        "offer_sent",
        "offer_declined",
        "offer_sent",
    ]


async def test_an_incident_that_cannot_be_moved_on_holds_up_no_other(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([100, 200], offer_window_by_severity={1: 3600.0})
    ev = s.event()
    poisoned = await IncidentStore(db).open_or_join(
        Trigger(ev.event_id, s.w.agency, s.w.patient.id, s.w.device.id, "fall", 1, s.clock.now),
        JOIN_WINDOW_S,
    )
    other = await make_scene([100], offer_window_by_severity={1: 3600.0})
    ev2 = other.event()
    fine = await IncidentStore(db).open_or_join(
        Trigger(
            ev2.event_id,
            other.w.agency,
            other.w.patient.id,
            other.w.device.id,
            "fall",
            1,
            s.clock.now,
        ),
        JOIN_WINDOW_S,
    )
    assert poisoned is not None and fine is not None
    name = f"refuse_{uuid.uuid4().hex[:8]}"
    await db.pool.execute(  # every wave of the first incident fails, as a bug would
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" IF NEW.incident_id = '{poisoned.incident.id}' THEN RAISE EXCEPTION 'poison'; END IF;"
        " RETURN NEW; END $$;"
        f" CREATE TRIGGER {name} BEFORE INSERT ON offers FOR EACH ROW EXECUTE FUNCTION {name}()"
    )
    try:
        s.clock.now += STALLED_AFTER_S + 1
        assert await s.dispatcher.tick() is False  # the first failed, and said so
        assert await other.offered() == [1]  # the other got its wave all the same
        assert await s.offered() == [0, 0]
    finally:
        await db.pool.execute(f"DROP TRIGGER {name} ON offers; DROP FUNCTION {name}()")
