"""``careknot rebuild`` against the real Redis and Postgres: the worker records fixes, Redis
loses the namespace, and the live picture (positions, cell membership, busy) comes back whole;
what a partial loss leaves is put right; pending offers and trackers at visits come back."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from adapters.metrics import FixMetrics
from adapters.storage.handovers import HandoverStore
from adapters.storage.history import History
from adapters.storage.incidents import IncidentRow, IncidentStore
from adapters.storage.live import AVAILABLE, BUSY
from adapters.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow
from adapters.storage.rebuild import Rebuilt, rebuild
from careknot.up import settings_env
from dispatch.model import PlannedOffer
from geofence.quality import AgencyPolicies
from geofence.transitions import FenceState, FenceTracker
from geofence.transitions import Fix as TrackerFix
from kernel.contracts import FixEvent
from kernel.settings import Settings
from streams.fix_flow import apply_fixes
from streams.runtime import Runtime
from visits.rules import Visit

pytestmark = pytest.mark.servers

AGENCY = "rebuild-ag"
CAREGIVERS = [f"rb-cg-{i}" for i in range(30)]
ORIGIN = (53.80, -1.55)
STEP_DEG = 0.003  # ~330 m north per fix, 30 s apart: 40 km/h, across res-8 cells
FIXES_EACH = 3
Snapshot = dict[str, Any]


@pytest.fixture(scope="module")
async def settings(migrated: Settings) -> AsyncIterator[Settings]:
    """A namespace of its own: the test deletes every Redis key of it."""
    own = migrated.model_copy(update={"namespace": f"{migrated.namespace}rb{secrets.token_hex(2)}"})
    async with Database(own) as db:
        await db.migrate()
    yield own
    await _delete_namespace(own)
    conn = await asyncpg.connect(own.postgres_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{own.namespace}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = Runtime(settings)
    yield await rt.ready()
    await rt.close()


def fix(index: int, step: int, t0: float, **changes: Any) -> FixEvent:
    cg = CAREGIVERS[index]
    doc: dict[str, Any] = {
        "event_id": f"{cg}:{step}",
        "agency_id": AGENCY,
        "caregiver_id": cg,
        "lat": ORIGIN[0] + (index % 6) * 0.01 + step * STEP_DEG,
        "lon": ORIGIN[1] + (index // 6) * 0.015,
        "ts": t0 + 30 * step,
        "acc": 8.0 + index % 5,
        "vel": 40.0,
        "batt": 90 - step,
        "received_at": t0 + 30 * step + 0.3,
    }
    doc.update(changes)
    return FixEvent.model_validate(doc)


async def _delete_namespace(settings: Settings) -> int:
    """SCAN and DEL every key of this namespace, and only of it."""
    r = aioredis.Redis.from_url(settings.redis_url)
    deleted = 0
    try:
        async for key in r.scan_iter(match=settings.keys.everything(), count=1000):
            deleted += int(await r.delete(key))
    finally:
        await r.aclose()
    return deleted


async def _picture(settings: Settings) -> Snapshot:
    """Every live-index key of the namespace: caregiver hashes (no status field means
    available) and the members of street and area cells."""
    r = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    out: Snapshot = {}
    try:
        keys = settings.keys
        for kind, prefix in (
            ("cg", keys.caregiver_prefix()),
            ("street", keys.cell_prefix("street")),
            ("area", keys.cell_prefix("area")),
        ):
            async for key in r.scan_iter(match=prefix + "*", count=1000):
                if kind == "cg":
                    out[key] = {"status": AVAILABLE, **await r.hgetall(key)}
                elif members := await r.hkeys(key):
                    out[key] = sorted(members)
    finally:
        await r.aclose()
    return out


async def _seed(db: Database) -> None:
    await db.upsert_agency(AGENCY, "Rebuild Care")
    await db.upsert_caregivers([CaregiverRow(cg, AGENCY, f"Carer {cg}") for cg in CAREGIVERS])
    await db.upsert_patients([PatientRow("rb-pat", AGENCY, "Pat Rebuild", *ORIGIN)])
    await db.upsert_devices([DeviceRow("rb-dev", AGENCY, "rb-pat", "fall_detector")])


async def _open_fall(store: IncidentStore, event_id: str, now: float) -> IncidentRow:
    """A fall at the rebuild tests' home, opened straight in the store."""
    opened = await store.open(
        event_id=event_id,
        agency_id=AGENCY,
        patient_id="rb-pat",
        device_id="rb-dev",
        kind="fall",
        severity=1,
        at=now,
    )
    assert opened is not None
    return opened


async def _assign(db: Database, caregiver: str, now: float) -> str:
    opened = await _open_fall(IncidentStore(db), f"rb-evt-{caregiver}", now)
    assert (await HandoverStore(db).assign(opened.id, caregiver, AGENCY, "dispatcher:rb", now)).done
    return opened.id


async def _record_the_day(rt: Runtime, t0: float) -> None:
    """Fixes through the worker's own step; a late one per caregiver goes to history only."""
    history, metrics = History(rt.db), FixMetrics()
    for step in range(FIXES_EACH):
        batch = [fix(i, step, t0) for i in range(len(CAREGIVERS))]
        await apply_fixes(rt, batch, history, AgencyPolicies(), metrics)
    late = [fix(i, 0, t0 + 5, lat=ORIGIN[0] - 0.01) for i in range(len(CAREGIVERS))]
    await apply_fixes(rt, late, history, AgencyPolicies(), metrics)


async def test_the_live_picture_comes_back_whole_after_redis_loses_it(
    settings: Settings, runtime: Runtime, redis: aioredis.Redis
) -> None:
    now = time.time() // 1
    t0 = now - 30 * FIXES_EACH - 60
    await _seed(runtime.db)
    await _record_the_day(runtime, t0)
    await _assign(runtime.db, CAREGIVERS[0], now)
    await runtime.live.set_status(CAREGIVERS[0], BUSY)
    done = await _assign(runtime.db, CAREGIVERS[1], now)  # assigned, then resolved: available
    assert (await HandoverStore(runtime.db).resolve(done, AGENCY, "dispatcher:rb", now)).done
    before = await _picture(settings)
    assert len([k for k in before if k.startswith(settings.keys.caregiver(""))]) == len(CAREGIVERS)
    assert len({k.split(":")[1] for k in before}) == 3  # cg, street and area keys all there

    assert await _delete_namespace(settings) > 0
    assert await _picture(settings) == {}

    first = await rebuild(runtime.db, redis, settings)
    assert first == Rebuilt(positions=len(CAREGIVERS), moved=len(CAREGIVERS), busy=1)
    after = await _picture(settings)
    assert after == before
    assert after[settings.keys.caregiver(CAREGIVERS[0])]["status"] == BUSY
    last = fix(7, FIXES_EACH - 1, t0)
    assert float(after[settings.keys.caregiver(CAREGIVERS[7])]["ts"]) == last.ts

    assert _rebuild_verb(settings) == (
        f"namespace {settings.namespace}: {len(CAREGIVERS)} positions read, 0 applied,"
        " 1 caregivers busy, 0 made available, 0 cell memberships put right,"
        " 0 pending offers, 0 visit trackers"
    )
    again = await rebuild(runtime.db, redis, settings)
    assert again == Rebuilt(positions=len(CAREGIVERS), moved=0, busy=1)
    assert await _picture(settings) == before


def _rebuild_verb(settings: Settings) -> str:
    """``careknot rebuild`` as a user runs it; what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "careknot.cli", "-l", "warning", "rebuild"],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_a_newer_position_already_in_redis_is_kept(
    settings: Settings, runtime: Runtime, redis: aioredis.Redis
) -> None:
    """The worker may have moved someone after Redis came back and before the rebuild ran."""
    now = time.time() // 1
    t0 = now - 30 * FIXES_EACH - 60
    cg = CAREGIVERS[3]
    newer = fix(3, FIXES_EACH + 1, t0)
    await runtime.live.update([newer])
    await rebuild(runtime.db, redis, settings)
    picture = await _picture(settings)
    assert float(picture[settings.keys.caregiver(cg)]["ts"]) == newer.ts
    assert cg in picture[settings.keys.cell("street", AGENCY, await _cell(settings, cg))]


async def _cell(settings: Settings, caregiver: str) -> str:
    r = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        return str(await r.hget(settings.keys.caregiver(caregiver), "cell"))
    finally:
        await r.aclose()


async def test_strays_missing_cells_and_stale_busy_are_put_right(
    settings: Settings, runtime: Runtime, redis: aioredis.Redis
) -> None:
    """What a partial loss leaves: a caregiver in a cell she has left, one missing from her own
    cell, and one busy in Redis with no incident assigned in Postgres."""
    await _seed(runtime.db)  # idempotent, as the day's fixes are: the test stands alone
    await _record_the_day(runtime, time.time() // 1 - 30 * FIXES_EACH - 60)
    await rebuild(runtime.db, redis, settings)
    whole = await _picture(settings)
    stray, lost, idle = CAREGIVERS[4], CAREGIVERS[5], CAREGIVERS[6]
    r = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        await r.hset(
            settings.keys.cell("street", AGENCY, "88194ad2c3fffff"), stray, "left long ago"
        )
        await r.hset(settings.keys.cell("area", AGENCY, "86194ad2fffffff"), stray, "left long ago")
        await r.hdel(settings.keys.cell("street", AGENCY, await _cell(settings, lost)), lost)
    finally:
        await r.aclose()
    await runtime.live.set_status(idle, BUSY)

    done = await rebuild(runtime.db, redis, settings)
    assert (done.memberships, done.freed, done.moved) == (3, 1, 0)
    assert await _picture(settings) == whole


async def test_pending_offers_and_trackers_at_visits_come_back(
    settings: Settings, runtime: Runtime, redis: aioredis.Redis
) -> None:
    """An offer still in its window gets its record back (one past it does not). A caregiver at
    a visit checked in by GPS has her tracker know she is inside that home, whatever else it
    holds; one whose arrival there is under way keeps it; a manual check-in gives nothing."""
    now = time.time()
    await _seed(runtime.db)  # idempotent: the test stands alone
    store = IncidentStore(runtime.db)
    opened = await _open_fall(store, "rb-evt-offers", now)
    plans = [PlannedOffer(CAREGIVERS[10], 1, 500.0, 60.0, now + 60)]
    plans.append(PlannedOffer(CAREGIVERS[11], 1, 900.0, 90.0, now - 1))
    sent = await store.start_wave(opened, plans, now)
    assert sent is not None
    fresh, afresh, arriving, manual = CAREGIVERS[12:16]
    await _at_visits(runtime, {fresh: "gps", afresh: "gps", arriving: "gps", manual: "manual"}, now)
    await _delete_namespace(settings)
    seen = FenceTracker(afresh, last=TrackerFix(afresh, *ORIGIN, now - 5.25, 4.0))
    dwelling = FenceTracker(arriving, fences={"rb-pat": FenceState(False, now - 3)})
    for tracker in (seen, dwelling):
        key = settings.keys.visit_trackers()
        await redis.hset(key, tracker.caregiver_id, json.dumps(tracker.to_dict()))

    done = await rebuild(runtime.db, redis, settings)
    assert (done.offers, done.trackers) == (1, 2)
    r = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        offer = await r.hgetall(settings.keys.offer(sent[0].offer_id))
        gone = await r.exists(settings.keys.offer(sent[1].offer_id))
        stored = await r.hgetall(settings.keys.visit_trackers())
    finally:
        await r.aclose()
    assert offer["caregiver_id"] == CAREGIVERS[10]
    assert offer["incident_id"] == opened.id
    assert (offer["agency_id"], gone) == (AGENCY, 0)
    assert float(offer["expires_at"]) == pytest.approx(now + 60, abs=1e-3)
    trackers = {cg: FenceTracker.from_dict(json.loads(v)) for cg, v in stored.items()}
    assert trackers.keys() == {fresh, afresh, arriving}
    assert trackers[fresh].inside == trackers[afresh].inside == {"rb-pat"}
    assert trackers[afresh].last == seen.last
    assert trackers[arriving].to_dict() == dwelling.to_dict()
    assert (await rebuild(runtime.db, redis, settings)).trackers == 0


async def _at_visits(runtime: Runtime, sources: dict[str, str], now: float) -> None:
    """A visit at the patient's home per caregiver, checked in by ``sources[caregiver]``."""
    visits = runtime.redis.visit_store(runtime.db, runtime.settings)
    await visits.add_visits(
        [
            Visit(f"rb-{source}-{cg}", AGENCY, "rb-pat", cg, now - 600, now + 1200, *ORIGIN)
            for cg, source in sources.items()
        ]
    )
    for cg, source in sources.items():
        await runtime.db.pool.execute(
            "UPDATE visits SET state = 'arrived', check_in = $2::jsonb WHERE id = $1",
            f"rb-{source}-{cg}",
            json.dumps({"at": now - 300, "source": source, "reason": ""}),
        )
