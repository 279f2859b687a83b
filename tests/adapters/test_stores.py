"""Storage adapters and the dispatcher against the real Postgres and Redis (no Kafka).

The module has a namespace of its own (Postgres schema and Redis key prefix), removed at
teardown. Every test seeds its own agency, so tests sharing the namespace never meet.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.storage.backlog import Backlog
from adapters.storage.connection import RedisConnection
from adapters.storage.incidents import IncidentStore, SentOffer
from adapters.storage.live import BUSY, LiveIndex, cell_of
from adapters.storage.namespace import drop_namespace
from adapters.storage.offers import OfferStore
from adapters.storage.postgres import Database
from adapters.storage.schema import MIGRATIONS
from dispatch.model import PlannedOffer
from dispatch.ranking import search_plan
from kernel import recipients
from kernel.settings import Settings
from streams.dispatcher import Dispatcher
from tests.adapters.scenes import (
    LEEDS,
    SceneMaker,
    World,
    all_done,
    event_kinds,
    fix,
    north,
    offer_states,
    open_incident,
    seed,
)

pytestmark = pytest.mark.servers

RACE_ROUNDS = 20


# ---------------------------------------------------------------- a small world per test


async def offered(db: Database, w: World, now: float, expiries: list[float]) -> list[SentOffer]:
    """An incident offered to the world's first caregivers, expiring as given."""
    incident = await open_incident(db, w, now)
    planned = [
        PlannedOffer(w.cg(i), 1, 100.0 * (i + 1), 10.0 * (i + 1), exp)
        for i, exp in enumerate(expiries)
    ]
    sent = await IncidentStore(db).start_wave(incident, planned, now)
    assert sent is not None
    return sent


# ---------------------------------------------------------------- Postgres: migrations


async def test_migrate_twice_applies_nothing_the_second_time(
    first_migration: list[int], db: Database
) -> None:
    assert first_migration == [version for version, _sql in MIGRATIONS]
    assert await db.migrate() == []


async def test_concurrent_migrations_apply_once(settings: Settings) -> None:
    fresh = settings.model_copy(update={"namespace": f"t{uuid.uuid4().hex[:8]}"})
    try:
        async with Database(fresh) as one, Database(fresh) as two:
            applied = await all_done(one.migrate(), two.migrate())
        assert sorted(applied) == [[], [version for version, _sql in MIGRATIONS]]
    finally:
        await drop_namespace(fresh)


# ---------------------------------------------------------------- Redis: live index


async def cell_members(
    redis: aioredis.Redis, settings: Settings, agency: str, cell: str
) -> set[str]:
    members = await redis.hkeys(settings.keys.cell("street", agency, cell))
    return {m.decode() if isinstance(m, bytes) else m for m in members}


async def test_a_fix_moves_cell_membership(
    live: LiveIndex, redis: aioredis.Redis, settings: Settings
) -> None:
    cid, agency, now = f"cg-{uuid.uuid4().hex[:8]}", f"ag-{uuid.uuid4().hex[:8]}", time.time()
    here, there = LEEDS, north(3000)
    assert cell_of(*here) != cell_of(*there)
    assert await live.update([fix(cid, agency, here, now)]) == {cid: "available"}
    assert cid in await cell_members(redis, settings, agency, cell_of(*here))
    assert await live.update([fix(cid, agency, there, now + 1)]) == {cid: "available"}
    assert cid not in await cell_members(redis, settings, agency, cell_of(*here))
    assert cid in await cell_members(redis, settings, agency, cell_of(*there))


async def test_an_older_fix_never_overwrites_a_newer_one(live: LiveIndex) -> None:
    cid, agency, now = f"cg-{uuid.uuid4().hex[:8]}", f"ag-{uuid.uuid4().hex[:8]}", time.time()
    await live.update([fix(cid, agency, north(500), now)])
    assert await live.update([fix(cid, agency, LEEDS, now - 10)]) == {}
    assert await live.update([fix(cid, agency, LEEDS, now)]) == {}  # same age: not newer
    (c,) = await live.candidates([cid])
    assert c.ts == now
    assert c.lat == pytest.approx(north(500)[0])
    # within one batch too: the later, older fix is ignored
    batch = [fix(cid, agency, north(900), now + 5), fix(cid, agency, LEEDS, now + 2)]
    assert await live.update(batch) == {cid: "available"}
    (c,) = await live.candidates([cid])
    assert c.ts == now + 5
    assert c.lat == pytest.approx(north(900)[0])


async def test_a_search_finds_her_in_the_rings_of_her_agency_only(live: LiveIndex) -> None:
    tag, now = uuid.uuid4().hex[:8], time.time()
    agency, other = f"ag-{tag}", f"other-{tag}"
    near, far, stranger = f"near-{tag}", f"far-{tag}", f"stranger-{tag}"
    await live.update(
        [
            fix(near, agency, north(200), now),
            fix(far, agency, north(4000), now),
            fix(stranger, other, north(100), now),
        ]
    )

    async def found(
        agency_id: str, home: tuple[float, float], need: int, steps: int | None = None
    ) -> list[str]:
        lat, lon = home
        plan = list(search_plan(lat, lon, 3))[:steps]
        hits = await live.search(
            agency_id, plan, lat=lat, lon=lon, need=need, now=now, stale_after_s=120
        )
        return [c.caregiver_id for c in hits]

    # the nearest first; someone in a further ring when more are needed
    assert await found(agency, LEEDS, need=1) == [near]
    assert await found(agency, LEEDS, need=2) == [near, far]
    assert await found(agency, LEEDS, need=2, steps=1) == [near]  # the street disk alone
    assert await found(agency, north(50_000), need=1) == []
    assert await found(other, LEEDS, need=5) == [stranger]


async def test_candidates_and_status(live: LiveIndex) -> None:
    tag, now = uuid.uuid4().hex[:8], time.time()
    a, b = f"a-{tag}", f"b-{tag}"
    await live.update([fix(a, "ag1", north(100), now), fix(b, "ag2", north(300), now - 5)])
    await live.set_status(b, BUSY)
    found = await live.candidates([a, f"ghost-{tag}", b])
    assert [(c.caregiver_id, c.agency_id, c.status, c.ts) for c in found] == [
        (a, "ag1", "available", now),
        (b, "ag2", "busy", now - 5),
    ]
    assert found[0].lat == pytest.approx(north(100)[0])
    assert found[0].lon == pytest.approx(LEEDS[1])
    moved = await live.update([fix(b, "ag2", north(400), now)])
    assert moved == {b: "busy"}  # a new fix keeps her status
    await live.set_status(b, "available")
    assert [c.status for c in await live.candidates([b])] == ["available"]


# ---------------------------------------------------------------- Postgres: incidents


async def test_open_is_idempotent_on_the_event_id(db: Database) -> None:
    w, now = await seed(db), time.time()
    store = IncidentStore(db)
    args: dict[str, Any] = {
        "event_id": f"{w.device.id}:7:1",
        "agency_id": w.agency,
        "patient_id": w.patient.id,
        "device_id": w.device.id,
        "kind": "sos",
        "severity": 1,
        "at": now,
    }
    first = await store.open(**args)
    assert first is not None
    assert (first.state, first.wave, first.assignee_id) == ("open", 0, None)
    assert (first.lat, first.lon, first.patient_id) == (*LEEDS, w.patient.id)
    assert await store.open(**args) is None
    assert await store.get(first.id) == first
    assert await event_kinds(db, first.id) == ["incident_opened"]


async def test_start_wave_races_have_one_winner(db: Database, db2: Database) -> None:
    w = await seed(db, caregivers=2)
    for _ in range(5):
        now = time.time()
        incident = await open_incident(db, w, now)
        plans = [[PlannedOffer(w.cg(i), 1, 100.0, 10.0, now + 45)] for i in range(2)]
        results = await all_done(
            IncidentStore(db).start_wave(incident, plans[0], now),
            IncidentStore(db2).start_wave(incident, plans[1], now),
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        assert len(winners[0]) == 1
        (sent,) = winners[0]
        assert await offer_states(db, incident.id) == {sent.caregiver_id: "pending"}
        row = await IncidentStore(db).get(incident.id)
        assert row is not None
        assert (row.state, row.wave) == ("offered", 1)
        # the stale row loses again, and cannot escalate either
        assert await IncidentStore(db).start_wave(incident, plans[0], now) is None
        assert await IncidentStore(db).escalate(incident, "test", now) is False
        assert await IncidentStore(db).escalate(row, "test", now) is True
        assert await IncidentStore(db).escalate(row, "test", now) is False


# ---------------------------------------------------------------- Postgres: offers


async def test_concurrent_accepts_have_exactly_one_winner(db: Database, db2: Database) -> None:
    w = await seed(db, caregivers=2)
    for _ in range(RACE_ROUNDS):
        now = time.time()
        a, b = await offered(db, w, now, [now + 45, now + 45])
        results = await all_done(
            OfferStore(db).accept(a.offer_id, a.caregiver_id, now),
            OfferStore(db2).accept(b.offer_id, b.caregiver_id, now),
        )
        outcomes = {r.outcome: sent for r, sent in zip(results, (a, b), strict=True) if r}
        assert len(outcomes) == 2
        assert "assigned" in outcomes
        # the loser's offer was taken by the winner, before or after she got her lock
        loser = outcomes.pop("taken", None) or outcomes.pop("offer_taken")
        winner = outcomes["assigned"]
        incident = await IncidentStore(db).get(a.incident_id)
        assert incident is not None
        assert (incident.state, incident.assignee_id) == ("assigned", winner.caregiver_id)
        assert await offer_states(db, a.incident_id) == {
            winner.caregiver_id: "accepted",
            loser.caregiver_id: "taken",
        }
        assert (await event_kinds(db, a.incident_id)).count("incident_assigned") == 1


async def test_sequential_accepts_the_first_wins(db: Database) -> None:
    w, now = await seed(db, caregivers=2), time.time()
    a, b = await offered(db, w, now, [now + 45, now + 45])
    won = await OfferStore(db).accept(a.offer_id, a.caregiver_id, now + 1)
    assert won is not None
    assert (won.outcome, won.eta_s, won.taken) == ("assigned", 10.0, [(b.offer_id, b.caregiver_id)])
    late = await OfferStore(db).accept(b.offer_id, b.caregiver_id, now + 2)
    assert late is not None
    assert late.outcome == "offer_taken"
    kinds = await event_kinds(db, a.incident_id)
    assert kinds.count("incident_assigned") == 1
    assert kinds.count("offer_taken") == 1


async def test_concurrent_declines_close_the_wave_once(db: Database, db2: Database) -> None:
    w = await seed(db, caregivers=2)
    for _ in range(RACE_ROUNDS):
        now = time.time()
        a, b = await offered(db, w, now, [now + 45, now + 45])
        results = await all_done(
            OfferStore(db).decline(a.offer_id, a.caregiver_id, None, now),
            OfferStore(db2).decline(b.offer_id, b.caregiver_id, "busy", now),
        )
        assert sorted(r.wave_closed for r in results) == [False, True]


async def test_decline_closes_the_wave_with_the_last_pending_offer(db: Database) -> None:
    w, now = await seed(db, caregivers=2), time.time()
    a, b = await offered(db, w, now, [now + 45, now + 45])
    first = await OfferStore(db).decline(a.offer_id, a.caregiver_id, "driving", now + 1)
    assert first is not None
    assert (first.outcome, first.wave_closed) == ("declined", False)
    last = await OfferStore(db).decline(b.offer_id, b.caregiver_id, None, now + 2)
    assert last is not None
    assert (last.outcome, last.wave_closed) == ("declined", True)
    again = await OfferStore(db).decline(b.offer_id, b.caregiver_id, None, now + 3)
    assert again is not None
    assert (again.outcome, again.wave_closed) == ("offer_declined", False)
    assert await offer_states(db, a.incident_id) == {
        a.caregiver_id: "declined",
        b.caregiver_id: "declined",
    }
    assert a.incident_id not in await Backlog(db).stalled(now + 1)  # just answered
    assert a.incident_id in await Backlog(db).stalled(now + 2)


async def test_expire_due_expires_only_offers_past_expiry(db: Database) -> None:
    w, now = await seed(db, caregivers=2), time.time()
    a, b = await offered(db, w, now, [now + 10, now + 20])
    store = OfferStore(db)
    expired, closed = await store.expire_due(now + 15)
    mine = [e for e in expired if e.incident_id == a.incident_id]
    assert [(e.offer_id, e.caregiver_id) for e in mine] == [(a.offer_id, a.caregiver_id)]
    assert a.incident_id not in closed
    expired, closed = await store.expire_due(now + 20)  # expiry is inclusive
    mine = [e for e in expired if e.incident_id == a.incident_id]
    assert [(e.offer_id, e.caregiver_id) for e in mine] == [(b.offer_id, b.caregiver_id)]
    assert a.incident_id in closed
    assert await offer_states(db, a.incident_id) == {
        a.caregiver_id: "expired",
        b.caregiver_id: "expired",
    }
    assert (await event_kinds(db, a.incident_id)).count("offer_expired") == 2
    expired, closed = await store.expire_due(now + 30)
    assert a.incident_id not in {e.incident_id for e in expired} | closed


async def test_accepting_an_expired_offer(db: Database) -> None:
    w, now = await seed(db, caregivers=2), time.time()
    a, b = await offered(db, w, now, [now + 10, now + 10])
    store = OfferStore(db)
    # past expiry but not yet timed out (still 'pending')
    late = await store.accept(a.offer_id, a.caregiver_id, now + 11)
    assert late is not None
    assert late.outcome == "offer_expired"
    await store.expire_due(now + 11)  # now 'expired'
    later = await store.accept(b.offer_id, b.caregiver_id, now + 12)
    assert later is not None
    assert later.outcome == "offer_expired"
    incident = await IncidentStore(db).get(a.incident_id)
    assert incident is not None
    assert (incident.state, incident.assignee_id) == ("offered", None)


async def test_answers_to_someone_elses_offer_are_refused(db: Database) -> None:
    w, now = await seed(db, caregivers=2), time.time()
    a, _b = await offered(db, w, now, [now + 45, now + 45])
    store = OfferStore(db)
    assert await store.accept(a.offer_id, w.cg(1), now) is None
    assert await store.decline(a.offer_id, w.cg(1), None, now) is None
    assert await store.accept("not-a-uuid", a.caregiver_id, now) is None
    assert await store.accept(str(uuid.uuid4()), a.caregiver_id, now) is None
    assert await offer_states(db, a.incident_id) == {w.cg(0): "pending", w.cg(1): "pending"}


# ---------------------------------------------------------------- dispatcher, end to end


async def test_nearest_available_is_offered_and_decline_moves_on(
    make_scene: SceneMaker, db: Database, live: LiveIndex, settings: Settings
) -> None:
    stale_s = settings.position_stale_s + 1
    s = await make_scene([300, 600, 100, 150], ages_s={3: stale_s})
    from_copy = s.mirror.answered if s.mirror else 0
    await live.set_status(s.w.cg(2), BUSY)
    other = await seed(db, caregivers=1)
    await live.update([fix(other.cg(0), other.agency, north(50), s.clock.now)])

    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    assert await s.offered() == [1, 0, 0, 0]
    (offer,) = await s.to_cg(0, "offer")
    assert offer["expires_at"] == pytest.approx(s.clock.now + settings.offer_window_by_severity[1])
    assert offer["incident"]["incident_id"] == incident.id
    assert offer["incident"]["kind"] == "fall"
    assert offer["incident"]["distance_m"] == pytest.approx(300, rel=0.01)
    for recipient in (
        recipients.family_of(s.w.agency, s.w.patient.id),
        recipients.dispatchers(s.w.agency),
    ):
        assert [f["state"] for f in await s.incident_frames(recipient)] == ["offered"]

    s.clock.now += 5
    await s.answer(0, "decline")
    assert await s.offered() == [1, 1, 0, 0]

    s.clock.now += 5
    await s.answer(1, "decline")  # nobody else is eligible: busy, stale, other agency
    assert await s.offered() == [1, 1, 0, 0]
    assert await s.to(recipients.caregiver(other.cg(0))) == []
    frames = await s.incident_frames(recipients.dispatchers(s.w.agency))
    assert frames[-1]["state"] == "escalated"
    # three waves, and one more look once escalated (its waves go on: no one is left now)
    assert s.mirror is None or s.mirror.answered - from_copy == 4
    row = await IncidentStore(db).get(incident.id)
    assert row is not None
    assert row.state == "escalated"
    (escalated,) = [
        e for e in await db.incident_events(incident.id) if e.kind == "incident_escalated"
    ]
    assert escalated.payload["reason"] == "no_candidates"


async def test_an_expired_offer_goes_to_the_next_nearest(
    make_scene: SceneMaker, settings: Settings
) -> None:
    s = await make_scene([600, 300])
    await s.dispatcher.on_device_event(s.event())
    assert await s.offered() == [0, 1]
    await s.dispatcher.tick()  # nothing is due yet
    assert await s.offered() == [0, 1]
    s.clock.now += settings.offer_window_by_severity[1] + 1
    await s.dispatcher.tick()
    assert [f["outcome"] for f in await s.to_cg(1, "offer_result")] == ["expired"]
    assert await s.offered() == [1, 1]
    (offer,) = await s.to_cg(0, "offer")
    assert offer["expires_at"] == pytest.approx(s.clock.now + settings.offer_window_by_severity[1])


async def test_escalates_after_max_waves_and_its_waves_go_on_larger(
    make_scene: SceneMaker, db: Database, settings: Settings
) -> None:
    s = await make_scene([300, 600, 900, 1200, 1500, 1800, 2100], max_waves=2, offer_wave_size=1)
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    s.clock.now += settings.offer_window_by_severity[1] + 1
    await s.dispatcher.tick()
    assert await s.offered() == [1, 1, 0, 0, 0, 0, 0]
    s.clock.now += settings.offer_window_by_severity[1] + 1
    await s.dispatcher.tick()  # the waves ran out: a person is told, and two more are asked
    assert await s.offered() == [1, 1, 1, 1, 0, 0, 0]
    for recipient in (
        recipients.dispatchers(s.w.agency),
        recipients.family_of(s.w.agency, s.w.patient.id),
    ):
        frames = await s.incident_frames(recipient)
        assert [f["state"] for f in frames] == ["offered", "offered", "escalated", "escalated"]
        assert frames[-1]["incident_id"] == incident.id
    s.clock.now += settings.offer_window_by_severity[1] + 1
    await s.dispatcher.tick()  # then four (three are left)
    assert await s.offered() == [1] * 7
    row = await IncidentStore(db).get(incident.id)
    assert row is not None
    assert (row.state, row.wave) == ("escalated", 4)
    (escalated,) = [
        e for e in await db.incident_events(incident.id) if e.kind == "incident_escalated"
    ]
    assert escalated.payload["reason"] == "no_acceptance"
    waves = await db.pool.fetch(
        "SELECT wave, count(*) AS n FROM offers WHERE incident_id = $1 GROUP BY wave ORDER BY 1",
        uuid.UUID(incident.id),
    )
    assert [(w["wave"], w["n"]) for w in waves] == [(1, 1), (2, 1), (3, 2), (4, 3)]


async def test_accept_assigns_and_tells_the_family(
    make_scene: SceneMaker, db: Database, live: LiveIndex
) -> None:
    s = await make_scene([300, 600], offer_wave_size=2)
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    assert await s.offered() == [1, 1]
    (offer,) = await s.to_cg(0, "offer")
    s.clock.now += 3
    await s.answer(0, "accept")
    assert [f["outcome"] for f in await s.to_cg(0, "offer_result")] == ["assigned"]
    assert [f["outcome"] for f in await s.to_cg(1, "offer_result")] == ["taken"]
    assigned = (await s.incident_frames(recipients.family_of(s.w.agency, s.w.patient.id)))[-1]
    caregiver = await db.caregiver(s.w.cg(0))
    assert caregiver is not None
    assert assigned["state"] == "assigned"
    assert assigned["assignee_id"] == s.w.cg(0)
    assert assigned["assignee_name"] == caregiver.name
    assert assigned["eta_s"] == pytest.approx(offer["incident"]["eta_s"], abs=0.1)
    assert assigned["at"] == s.clock.now
    row = await IncidentStore(db).get(incident.id)
    assert row is not None
    assert (row.state, row.assignee_id) == ("assigned", s.w.cg(0))
    assert [c.status for c in await live.candidates([s.w.cg(0)])] == [BUSY]
    s.clock.now += 1
    await s.answer(1, "accept")  # too late
    assert [f["outcome"] for f in await s.to_cg(1, "offer_result")] == ["taken", "taken"]


async def test_a_replayed_device_event_opens_nothing(make_scene: SceneMaker, db: Database) -> None:
    s = await make_scene([300, 600])
    assert await s.dispatcher.on_device_event(s.event(kind="motion")) is None
    assert await s.dispatcher.on_device_event(s.event()) is not None
    s.clock.now += 1
    assert await s.dispatcher.on_device_event(s.event()) is None
    assert await s.offered() == [1, 0]
    count = await db.pool.fetchval(
        "SELECT count(*) FROM incidents WHERE patient_id = $1", s.w.patient.id
    )
    assert count == 1


async def test_resume_moves_on_incidents_left_waiting(
    make_scene: SceneMaker, db: Database, settings: Settings, redis: aioredis.Redis
) -> None:
    declined = await make_scene([300, 600])
    await declined.dispatcher.on_device_event(declined.event())
    (offer,) = await declined.to_cg(0, "offer")
    # the process stops after the decline commits, before it makes the next wave
    answered = await OfferStore(db).decline(
        offer["offer_id"], declined.w.cg(0), None, declined.clock.now
    )
    assert answered is not None
    assert answered.wave_closed
    # and another stops after opening an incident, before its first wave
    opened = await make_scene([300])
    await open_incident(db, opened.w, declined.clock.now)
    assert (await declined.offered(), await opened.offered()) == ([1, 0], [0])

    async with Database(settings) as restarted:
        await Dispatcher(settings, restarted, RedisConnection(redis), clock=declined.clock).resume()
    assert (await declined.offered(), await opened.offered()) == ([1, 1], [1])
