"""Phones gone away (OwnTracks' last will): their caregivers are no dispatch candidates until
their next fix, and their dispatchers see them offline at once; busy stays busy; a fix that
reached ingest after the notice wins."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis

from adapters.storage.live import AVAILABLE, BUSY, OFFLINE, LiveIndex, cell_of
from adapters.storage.outbox import Outbox
from dispatch.ranking import search_plan
from kernel import recipients
from kernel.contracts import FixEvent, Presence
from kernel.settings import Settings
from streams.fix_flow import gone_offline

HOME = (53.8008, -1.5491)


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[LiveIndex]:
    r = aioredis.Redis.from_url(settings.redis_url)
    yield LiveIndex(r, settings)
    await r.aclose()


def fix(cg: str, ts: float, received_at: float) -> FixEvent:
    """A fix of her agency (each caregiver here is her own agency's only one)."""
    lat, lon = HOME
    return FixEvent(
        event_id=f"{cg}:{ts}",
        agency_id=f"agency-of-{cg}",
        caregiver_id=cg,
        lat=lat + 0.001,
        lon=lon,
        ts=ts,
        received_at=received_at,
    )


async def candidates(live: LiveIndex, cg: str, now: float) -> list[str]:
    """Her agency's candidates around the home."""
    plan = search_plan(*HOME, 2)
    lat, lon = HOME
    found = await live.search(
        f"agency-of-{cg}", plan, lat=lat, lon=lon, need=5, now=now, stale_after_s=600
    )
    return [c.caregiver_id for c in found]


async def test_offline_until_the_next_fix(live: LiveIndex) -> None:
    cg, now = f"p-{uuid.uuid4().hex[:6]}", time.time()
    assert await live.update([fix(cg, now - 10, received_at=now - 9)]) == {cg: AVAILABLE}
    assert await candidates(live, cg, now) == [cg]
    assert await live.mark_offline(cg, at=now - 5)
    assert await candidates(live, cg, now) == []
    assert not await live.mark_offline(cg, at=now - 4)  # already offline: nothing to do
    assert await live.update([fix(cg, now - 1, received_at=now)]) == {cg: AVAILABLE}
    assert await candidates(live, cg, now) == [cg]


async def test_a_fix_received_after_the_notice_wins(live: LiveIndex) -> None:
    cg, now = f"p-{uuid.uuid4().hex[:6]}", time.time()
    await live.update([fix(cg, now - 3, received_at=now - 1)])
    assert not await live.mark_offline(cg, at=now - 2)  # the notice is older than her fix
    assert await candidates(live, cg, now) == [cg]


async def test_busy_stays_busy_and_unknown_stays_unknown(live: LiveIndex) -> None:
    cg, nobody, now = f"p-{uuid.uuid4().hex[:6]}", f"p-{uuid.uuid4().hex[:6]}", time.time()
    await live.update([fix(cg, now - 10, received_at=now - 9)])
    await live.set_status(cg, BUSY)
    assert not await live.mark_offline(cg, at=now)
    assert not await live.mark_offline(nobody, at=now)
    [busy] = await live.candidates([cg])
    assert busy.status == BUSY
    assert await live.candidates([nobody]) == []
    assert OFFLINE != BUSY


def notice(cg: str, at: float) -> Presence:
    return Presence(
        event_id=f"{cg}:offline:{at}",
        agency_id=f"agency-of-{cg}",
        caregiver_id=cg,
        online=False,
        at=at,
        source=f"owntracks/{cg}/phone",
    )


async def test_her_dispatchers_see_her_offline_at_once(settings: Settings, live: LiveIndex) -> None:
    cg, now = f"cg-{uuid.uuid4().hex[:8]}", time.time()
    r = aioredis.Redis.from_url(settings.redis_url)
    box = Outbox(r, settings)
    desk = recipients.dispatchers(f"agency-of-{cg}")
    try:
        await live.update([fix(cg, now - 10, received_at=now - 9)])
        assert await gone_offline(live, box, notice(cg, now - 5))
        (frame,) = [orjson.loads(m) for m in await box.since(desk, 0)]
        moved = fix(cg, now - 10, received_at=now - 9)
        assert {k: frame[k] for k in ("type", "caregiver_id", "status", "ts", "lat", "lon")} == {
            "type": "location",
            "caregiver_id": cg,
            "status": OFFLINE,
            "ts": now - 10,
            "lat": moved.lat,
            "lon": moved.lon,
        }
        assert frame["h3"] == cell_of(moved.lat, moved.lon)
        # a notice that changes nothing tells nobody
        assert not await gone_offline(live, box, notice(cg, now - 4))
        assert len(await box.since(desk, 0)) == 1
    finally:
        await r.aclose()
