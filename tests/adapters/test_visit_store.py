"""The visit store and the VisitKeeper against the real Postgres and Redis (no Kafka): fences
picked up without a restart, conditional record updates, de-duplicated alerts, tracker states
that survive a restart, and frames in the family's and dispatchers' outboxes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from adapters.storage import outbox
from adapters.storage.connection import RedisConnection
from adapters.storage.namespace import drop_namespace
from adapters.storage.postgres import CaregiverRow, Database, PatientRow
from adapters.storage.visit_store import FenceCache, VisitStore
from geofence.geodesy import LocalFrame
from geofence.transitions import FenceTracker, TrackerConfig
from geofence.transitions import Fix as TrackFix
from kernel import recipients
from kernel.contracts import FixEvent
from kernel.errors import RejectedInput
from kernel.settings import Settings
from streams.visit_keeper import VisitKeeper
from tests.adapters.cli_runs import careknot
from visits.rules import AlertChange, Visit, VisitRules

pytestmark = pytest.mark.servers

HOME = (53.8008, -1.5491)
T0 = float(int(time.time()))


@pytest.fixture(scope="module")
async def settings(migrated: Settings) -> AsyncIterator[Settings]:
    own = migrated.model_copy(
        update={
            "namespace": f"t{uuid.uuid4().hex[:8]}",
            "visit_dwell_in_s": 10.0,
            "visit_dwell_out_s": 20.0,
        }
    )
    async with Database(own) as db:
        await db.migrate()
    yield own
    await drop_namespace(own)


@pytest.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[Database]:
    async with Database(settings) as database:
        yield database


@pytest.fixture(scope="module")
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


async def agency(db: Database) -> str:
    """A fresh agency with caregiver ``{a}-cg`` and patient ``{a}-pat`` at HOME."""
    a = f"ag-{uuid.uuid4().hex[:6]}"
    await db.upsert_agency(a, a)
    await db.upsert_caregivers([CaregiverRow(f"{a}-cg", a, "Cara")])
    await db.upsert_patients([PatientRow(f"{a}-pat", a, "Pat", *HOME)])
    return a


def roster_visit(a: str, start: float, minutes: float = 30) -> Visit:
    end = start + minutes * 60
    return Visit(f"{a}-v", a, f"{a}-pat", f"{a}-cg", start, end, *HOME, ("lunch",))


def north(metres: float) -> tuple[float, float]:
    lon, lat = LocalFrame(*HOME).to_lonlat(0.0, metres)
    return lat, lon


def fix(a: str, t: float, metres: float) -> FixEvent:
    lat, lon = north(metres)
    return FixEvent(
        event_id=uuid.uuid4().hex,
        agency_id=a,
        caregiver_id=f"{a}-cg",
        lat=lat,
        lon=lon,
        ts=T0 + t,
        acc=5.0,
        received_at=T0 + t,
    )


async def frames(settings: Settings, redis: aioredis.Redis, recipient: str) -> list[Any]:
    box = outbox.Outbox(redis, settings)
    return [orjson.loads(m) for m in await box.since(recipient, 0)]


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


# ---------------------------------------------------------------- fences


async def test_fences_default_circle_own_radius_and_polygon(
    db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    a = await agency(db)
    store = VisitStore(db, redis, settings)
    cache = FenceCache(store, reload_s=3600)
    index = await cache.refresh()
    pat = f"{a}-pat"
    assert index.get(pat) is not None and index.get(pat).radius_m == 200.0  # type: ignore[union-attr]
    assert pat in index.fences_at(*north(150))

    await store.set_fence(pat, radius_m=100.0)  # bumps the counter: seen at the next refresh
    index = await cache.refresh()
    assert pat not in index.fences_at(*north(150))
    assert pat in index.fences_at(*north(50))

    square = _square(HOME, 30.0)
    await store.set_fence(pat, geojson=square)
    index = await cache.refresh()
    assert pat in index.fences_at(*north(20)) and pat not in index.fences_at(*north(40))
    with pytest.raises(RejectedInput):
        await store.set_fence(pat, geojson={"type": "Point", "coordinates": [0, 0]})
    with pytest.raises(RejectedInput):
        await store.set_fence("nobody", radius_m=50.0)


async def test_fences_known_as_they_are_are_not_built_again(
    db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    a = await agency(db)
    store = VisitStore(db, redis, settings)
    first = await store.fences()
    assert first[f"{a}-pat"].fence is not None
    known = {fid: stored.signature for fid, stored in first.items()}
    assert all(stored.fence is None for stored in (await store.fences(known)).values())
    await store.set_fence(f"{a}-pat", radius_m=120.0)
    again = await store.fences(known)
    assert [fid for fid, stored in again.items() if stored.fence is not None] == [f"{a}-pat"]
    assert again[f"{a}-pat"].signature != known[f"{a}-pat"]


def _square(centre: tuple[float, float], half_m: float) -> dict[str, Any]:
    frame = LocalFrame(*centre)
    corners = [(-half_m, -half_m), (half_m, -half_m), (half_m, half_m), (-half_m, half_m)]
    ring = [list(frame.to_lonlat(x, y)) for x, y in corners]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


# ---------------------------------------------------------------- records and alerts


async def test_a_record_moved_by_another_worker_is_not_overwritten(
    db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    a = await agency(db)
    store = VisitStore(db, redis, settings)
    await store.add_visits([roster_visit(a, T0)])
    record = (await store.records_for([f"{a}-cg"], T0, 3600))[f"{a}-cg"][0]
    assert record.state == "scheduled" and record.visit.tasks == ("lunch",)
    first = await store.save([replace(record, state="en_route", eta_s=300.0)])
    assert [r.version for r in first] == [record.version + 1]
    assert await store.save([replace(record, state="missed")]) == []  # read at the old version
    stored = await store.record(record.visit.visit_id)
    assert stored is not None and stored.state == "en_route" and stored.eta_s == 300.0


async def test_alerts_are_raised_once_and_cleared_once(
    db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    a = await agency(db)
    store = VisitStore(db, redis, settings)
    late = AlertChange("late", True, a, f"{a}-pat", f"{a}-cg", f"{a}-v", T0)
    assert await store.apply_alerts([late, late]) == [late]
    assert [x.kind for x in await store.alerts(a, open_only=True)] == ["late"]
    cleared = AlertChange("late", False, a, f"{a}-pat", f"{a}-cg", f"{a}-v", T0 + 60)
    assert await store.apply_alerts([cleared]) == [cleared]
    assert await store.apply_alerts([cleared]) == []
    assert await store.alerts(a, open_only=True) == []
    assert await store.apply_alerts([late]) == [late]  # the condition again: a new alert
    assert len(await store.alerts(a)) == 2


async def test_tracker_states_round_trip_through_redis(
    db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    store = VisitStore(db, redis, settings)
    config = TrackerConfig()
    tracker = FenceTracker("cg-x", config)
    tracker.update(TrackFix("cg-x", *HOME, T0), {})
    await store.save_trackers([tracker])
    again = await store.trackers(["cg-x", "cg-new"], config)
    assert again["cg-x"].to_dict() == tracker.to_dict()
    assert again["cg-new"].last is None


# ---------------------------------------------------------------- the keeper


async def keeper_of(
    db: Database, redis: aioredis.Redis, settings: Settings
) -> tuple[str, Clock, VisitKeeper]:
    """A fresh agency (see :func:`agency`), a clock, and a keeper going by it."""
    clock = Clock()
    return await agency(db), clock, VisitKeeper(settings, db, RedisConnection(redis), clock=clock)


async def test_keeper_tells_the_family_and_survives_a_restart(
    db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    a, clock, keeper = await keeper_of(db, redis, settings)
    await keeper.store.add_visits([roster_visit(a, T0 + 600)])
    await keeper.store.set_fence(f"{a}-pat", radius_m=100.0)
    # Every test's patient lives at HOME, each of another agency: hers alone count.
    for t, metres in ((0, 2000), (60, 1000), (120, 300), (150, 20), (160, 10), (170, 15)):
        clock.t = T0 + t
        await keeper.on_fixes([fix(a, t, metres)])

    keeper = VisitKeeper(settings, db, RedisConnection(redis), clock=clock)  # a restarted worker
    for t, metres in ((400, 300), (410, 600), (430, 900)):
        clock.t = T0 + t
        await keeper.on_fixes([fix(a, t, metres)])

    family = await frames(settings, redis, recipients.family_of(a, f"{a}-pat"))
    states = [f["state"] for f in family]
    assert states[0] == "en_route" and family[0]["eta_s"] > 0
    assert [s for s in states if s in ("arrived", "left")] == ["arrived", "left"]
    assert states.index("arrived") < states.index("left")
    record = await keeper.store.record(f"{a}-v")
    assert record is not None and record.state == "left"
    assert record.check_in is not None and record.check_in.at == T0 + 150
    assert record.check_out is not None and record.check_out.at == T0 + 400
    assert record.check_in.fix_ts == T0 + 160  # the fix that confirmed it, after the dwell
    assert record.check_in.distance_m == pytest.approx(10.0, abs=0.5)
    desk = await frames(settings, redis, recipients.dispatchers(a))
    assert [(f["kind"], f["state"]) for f in desk] == [("early_departure", "raised")]


async def test_a_batch_that_failed_is_followed_again_from_the_saved_trackers(
    db: Database, redis: aioredis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trackers stay in the worker's memory between batches; one that failed half-way must not
    leave them ahead of what was published, or its retry would lose the arrival."""
    a, clock, keeper = await keeper_of(db, redis, settings)
    await keeper.store.add_visits([roster_visit(a, T0 + 600)])
    await keeper.store.set_fence(f"{a}-pat", radius_m=100.0)
    for t, metres in ((0, 2000), (120, 300), (150, 20)):
        clock.t = T0 + t
        await keeper.on_fixes([fix(a, t, metres)])
    records_for, failures = keeper.store.records_for, [ConnectionError("Postgres went away")]

    async def failing_once(*args: Any) -> Any:
        if failures:
            raise failures.pop()
        return await records_for(*args)

    monkeypatch.setattr(keeper.store, "records_for", failing_once)
    clock.t = T0 + 160
    arriving = [fix(a, 160, 10)]  # confirms the arrival: the dwell has passed
    with pytest.raises(ConnectionError):
        await keeper.on_fixes(arriving)
    await keeper.on_fixes(arriving)  # the retry
    record = await keeper.store.record(f"{a}-v")
    assert record is not None and record.state == "arrived"
    assert record.check_in is not None and record.check_in.fix_ts == T0 + 160
    family = await frames(settings, redis, recipients.family_of(a, f"{a}-pat"))
    assert [f["state"] for f in family].count("arrived") == 1


async def test_keeper_late_alert_clears_on_check_in_and_manual_check_in_is_flagged(
    db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    a = await agency(db)
    clock = Clock()
    keeper = VisitKeeper(
        settings, db, RedisConnection(redis), clock=clock, rules=VisitRules(late_after_s=300)
    )
    await keeper.store.add_visits([roster_visit(a, T0 - 400)])
    await keeper.tick()
    record = await keeper.manual(f"{a}-v", "check_in", "phone has no GPS", T0 + 5)
    assert record is not None and record.state == "arrived" and record.check_in is not None
    assert record.check_in.source == "manual" and record.check_in.reason == "phone has no GPS"
    flagged = await db.pool.fetchval("SELECT needs_review FROM visits WHERE id = $1", f"{a}-v")
    assert flagged is True
    desk = await frames(settings, redis, recipients.dispatchers(a))
    assert [(f["kind"], f["state"]) for f in desk] == [("late", "raised"), ("late", "cleared")]
    assert desk[0]["alert_id"] == desk[1]["alert_id"] == f"late:{a}-v"
    assert await keeper.manual("no-such-visit", "check_in", "x", T0) is None


# ---------------------------------------------------------------- the report, as a user runs it


async def test_careknot_report_visits_csv_and_json(
    db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    a = await agency(db)
    keeper = VisitKeeper(settings, db, RedisConnection(redis), clock=Clock())
    await keeper.store.add_visits([roster_visit(a, T0)])
    await keeper.manual(f"{a}-v", "check_in", "no signal", T0 + 60)
    await keeper.manual(f"{a}-v", "check_out", "no signal", T0 + 60 + 1800)
    day = datetime.fromtimestamp(T0, tz=UTC).date()
    period = ["--from", str(day - timedelta(days=1)), "--to", str(day + timedelta(days=1))]
    done = careknot(settings, "report", "visits", "--agency", a, *period)
    assert done.returncode == 0, done.stderr
    header, line = done.stdout.splitlines()
    row = dict(zip(header.split(","), line.split(","), strict=True))
    assert (row["caregiver_id"], row["verified"], row["manual"]) == (f"{a}-cg", "1", "1")
    assert row["verified_hours"] == "0.5" and row["punctuality"] == "1.0"
    done = careknot(settings, "report", "visits", "--agency", a, *period, "--format", "json")
    body = json.loads(done.stdout)
    assert body["visits"][0]["needs_review"] is True
    assert body["visits"][0]["check_in"]["reason"] == "no signal"


async def test_fixes_the_live_index_accepted_are_followed_without_judging_them_again(
    db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    """The worker screens a batch once, against the live index, and hands the visits what it
    accepted; fixes that come unscreened are judged against her tracker's last fix."""
    a, clock, keeper = await keeper_of(db, redis, settings)
    clock.t = T0 + 30
    await keeper.on_fixes([fix(a, 0, 2000)])
    jump = fix(a, 30, 200)  # 1.8 km in 30 s: an impossible jump from her tracker's last fix
    await keeper.on_fixes([jump])
    kept = (await keeper.store.trackers([f"{a}-cg"], TrackerConfig()))[f"{a}-cg"]
    assert kept.last is not None and kept.last.ts == T0
    await keeper.on_accepted([jump])  # as the live index's screening passed it on
    saved = (await keeper.store.trackers([f"{a}-cg"], TrackerConfig()))[f"{a}-cg"]
    assert saved.last is not None and saved.last.ts == T0 + 30


async def test_trackers_are_saved_when_their_fences_change_or_their_last_fix_grows_old(
    db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    a, clock, keeper = await keeper_of(db, redis, settings)
    await keeper.store.set_fence(f"{a}-pat", radius_m=100.0)

    async def saved_last_ts(t: float, metres: float) -> float:
        clock.t = T0 + t
        await keeper.on_accepted([fix(a, t, metres)])
        tracker = (await keeper.store.trackers([f"{a}-cg"], TrackerConfig()))[f"{a}-cg"]
        assert tracker.last is not None
        return tracker.last.ts - T0

    assert await saved_last_ts(0, 2000) == 0  # her first: saved
    assert await saved_last_ts(10, 1900) == 0  # nothing new but her position
    assert await saved_last_ts(29, 1800) == 0
    assert await saved_last_ts(30, 1700) == 30  # her saved last fix had grown 30 s old
    assert await saved_last_ts(35, 20) == 35  # inside the home: her arriving begins
    assert await saved_last_ts(40, 15) == 35  # still arriving, since the same time
    restarted = VisitKeeper(settings, db, RedisConnection(redis), clock=clock)
    clock.t = T0 + 100
    await restarted.on_accepted([fix(a, 100, 10)])  # the dwell has passed: she arrived
    kept = (await restarted.store.trackers([f"{a}-cg"], TrackerConfig()))[f"{a}-cg"]
    assert kept.inside == {f"{a}-pat"}
