"""Location history against the real Postgres (COPY, idempotency, GeoJSON tracks), and the
worker's fix step against the real Redis and Postgres: screened, live, history."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.metrics import FixMetrics
from adapters.storage.history import History
from adapters.storage.live import LiveIndex
from adapters.storage.postgres import Database
from geofence.quality import AcceptedFix, AgencyPolicies
from kernel.contracts import FixEvent
from kernel.settings import Settings
from streams.fix_flow import apply_fixes
from streams.runtime import Runtime

pytestmark = pytest.mark.servers

LEEDS = (53.7997, -1.5492)
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
async def db(migrated: Settings) -> AsyncIterator[Database]:
    async with Database(migrated) as database:
        yield database


@pytest.fixture
def caregiver() -> str:
    return f"cg-{uuid.uuid4().hex[:8]}"


def fix(caregiver: str, ts: float, north_deg: float = 0.0, **changes: Any) -> FixEvent:
    doc: dict[str, Any] = {
        "event_id": f"{caregiver}:{ts}",
        "agency_id": "hist-ag",
        "caregiver_id": caregiver,
        "lat": LEEDS[0] + north_deg,
        "lon": LEEDS[1],
        "ts": ts,
        "acc": 8.0,
        "vel": 12.0,
        "batt": 80,
        "received_at": ts + 0.2,
    }
    doc.update(changes)
    return FixEvent.model_validate(doc)


async def test_a_replayed_batch_adds_nothing(db: Database, caregiver: str) -> None:
    history = History(db)
    batch = [fix(caregiver, T0 + i, 0.0001 * i) for i in range(2000)]
    assert await history.record(batch) == 2000
    assert await history.record(batch) == 0
    overlapping = [*batch[-10:], fix(caregiver, T0 + 5000)]
    assert await history.record([], overlapping) == 1
    track = await history.track(caregiver, T0, T0 + 10_000)
    assert len(track["features"][0]["geometry"]["coordinates"]) == 2001


async def test_a_duplicate_inside_one_batch_keeps_the_live_one(
    db: Database, caregiver: str
) -> None:
    history = History(db)
    same = fix(caregiver, T0)
    assert await history.record([same], [same, same]) == 1
    track = await history.track(caregiver, T0, T0)
    assert track["features"][0]["properties"]["live"] == [True]


async def test_a_track_is_geojson_in_time_order_within_the_range(
    db: Database, caregiver: str
) -> None:
    history = History(db)
    await history.record(
        [fix(caregiver, T0 + 30, 0.002), fix(caregiver, T0 + 10, 0.001)],
        [fix(caregiver, T0 + 20, 0.0015, acc=None)],
    )
    await history.record([fix(caregiver, T0 + 99, 0.01), fix("someone-else", T0 + 15)])
    track = await history.track(caregiver, T0, T0 + 30)
    assert track["type"] == "FeatureCollection"
    [feature] = track["features"]
    assert feature["type"] == "Feature"
    assert feature["geometry"] == {
        "type": "LineString",
        "coordinates": [
            [LEEDS[1], LEEDS[0] + 0.001],
            [LEEDS[1], LEEDS[0] + 0.0015],
            [LEEDS[1], LEEDS[0] + 0.002],
        ],
    }
    props = feature["properties"]
    assert props["caregiver_id"] == caregiver
    assert props["times"] == [T0 + 10, T0 + 20, T0 + 30]
    assert (props["start"], props["end"]) == (T0 + 10, T0 + 30)
    assert props["acc"] == [8.0, None, 8.0]
    assert props["live"] == [True, False, True]


async def test_one_fix_is_a_point_and_none_is_an_empty_collection(
    db: Database, caregiver: str
) -> None:
    history = History(db)
    await history.record([fix(caregiver, T0)])
    point = await history.track(caregiver, T0 - 1, T0 + 1)
    assert point["features"][0]["geometry"] == {
        "type": "Point",
        "coordinates": [LEEDS[1], LEEDS[0]],
    }
    assert await history.track(caregiver, T0 + 1, T0 + 2) == {
        "type": "FeatureCollection",
        "features": [],
    }


# ---------------------------------------------------------------- the worker's fix step


@pytest.fixture
async def runtime(migrated: Settings) -> AsyncIterator[Runtime]:
    rt = Runtime(migrated)
    yield await rt.ready()
    await rt.close()


async def _forget(settings: Settings, caregivers: list[str]) -> None:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        await client.delete(*(settings.keys.caregiver(c) for c in caregivers))
    finally:
        await client.aclose()


async def test_the_fix_step_screens_moves_the_live_index_and_keeps_the_history(
    runtime: Runtime, migrated: Settings, caregiver: str
) -> None:
    now = time.time() // 1
    good, late, twice = fix(caregiver, now - 10), fix(caregiver, now - 20), fix(caregiver, now - 10)
    teleport = fix(caregiver, now - 9, 1.0)  # 111 km in a second
    vague = fix(caregiver, now - 5, acc=900.0)
    null_island = fix(caregiver, now - 4, lat=0.0, lon=0.0)
    metrics = FixMetrics()
    history = History(runtime.db)
    step = [good, late, twice, teleport, vague, null_island]
    try:
        await apply_fixes(runtime, step, history, AgencyPolicies(), metrics)
        last = await runtime.live.last_fixes([caregiver, "nobody-at-all"])
        assert last == {caregiver: AcceptedFix(good.lat, good.lon, good.ts, good.acc)}
        track = await history.track(caregiver, now - 60, now)
        assert track["features"][0]["properties"]["times"] == [late.ts, good.ts]
        assert track["features"][0]["properties"]["live"] == [False, True]
        # the same batch again (a Kafka redelivery) moves nothing and loses nothing
        await apply_fixes(runtime, step, history, AgencyPolicies(), metrics)
        assert await runtime.live.last_fixes([caregiver]) == last
        assert await history.track(caregiver, now - 60, now) == track
    finally:
        await _forget(migrated, [caregiver])
    samples = {
        tuple(s.labels.values()): s.value
        for m in metrics.registry.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    assert samples[("accept", "")] == 1
    assert samples[("drop", "impossible_jump")] == 2
    assert samples[("drop", "poor_accuracy")] == 2
    assert samples[("drop", "null_island")] == 2
    assert samples[("history_only", "out_of_order")] == 2  # late, twice
    assert samples[("history_only", "duplicate")] == 3  # twice, then good and twice again


async def test_last_fixes_reads_what_the_live_index_holds(
    migrated: Settings, caregiver: str
) -> None:
    client = aioredis.Redis.from_url(migrated.redis_url)
    live = LiveIndex(client, migrated)
    try:
        await live.update([fix(caregiver, T0, acc=None), fix(caregiver, T0 - 5)])
        assert await live.last_fixes([caregiver, caregiver]) == {
            caregiver: AcceptedFix(LEEDS[0], LEEDS[1], T0, None)
        }
    finally:
        await _forget(migrated, [caregiver])
        await client.aclose()
