"""The dispatcher's in-memory copy of the live index (``LiveMirror``) against the Redis index it
follows, on a real Redis: the same answers as the Redis search while fixes and status changes
flow, every change Redis had before a search seen by that search, and a new copy whenever the
copy loses step (entries missing from the log, Redis's keys lost, a rebuild).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from adapters.storage.live import AVAILABLE, BUSY, OFFLINE, LiveIndex
from adapters.storage.live_mirror import LiveMirror
from adapters.storage.namespace import drop_namespace
from dispatch.ranking import search_plan
from kernel.contracts import FixEvent
from kernel.settings import Settings
from kernel.waiting import poll_until
from tests.adapters.live_people import AGENCIES, LEEDS, NOW, STALE_S, Person, put, scatter

pytestmark = pytest.mark.servers


@pytest.fixture
async def own(settings: Settings) -> AsyncIterator[Settings]:
    """A namespace of the test's own: each test's log starts at change 1."""
    s = settings.model_copy(update={"namespace": f"m{uuid.uuid4().hex[:8]}"})
    yield s
    await drop_namespace(s)


@pytest.fixture
def index(redis: aioredis.Redis, own: Settings) -> LiveIndex:
    return LiveIndex(redis, own)


@pytest.fixture
async def mirror(redis: aioredis.Redis, own: Settings) -> AsyncIterator[LiveMirror]:
    m = LiveMirror(redis, own)
    task = asyncio.create_task(m.run())
    await until(lambda: m.ready, "the mirror's first copy")
    yield m
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def agree(index: LiveIndex, mirror: LiveMirror, rng: random.Random, searches: int) -> int:
    """Search both ways around random homes; how many caregivers were found in all."""
    found_in_all = 0
    for _ in range(searches):
        agency = rng.choice(AGENCIES)
        lat, lon = rng.gauss(LEEDS[0], 0.15), rng.gauss(LEEDS[1], 0.25)
        plan = list(search_plan(lat, lon, rng.choice((1, 2, 3))))
        for need in (1, 3, 10, 60):
            args = dict(lat=lat, lon=lon, need=need, now=NOW, stale_after_s=STALE_S)
            in_redis = await index.search(agency, plan, **args)  # type: ignore[arg-type]
            change = await mirror.change_number()
            in_memory = await mirror.search(agency, plan, **args, change=change)  # type: ignore[arg-type]
            assert in_memory == in_redis
            found_in_all += len(in_redis)
    return found_in_all


async def until(condition: Callable[[], bool], what: str) -> None:
    async def probe() -> bool | None:
        return True if condition() else None

    await poll_until(probe, within=10.0, what=what)


def moved(rng: random.Random, people: list[Person], share: float, ts: float) -> list[Person]:
    out = []
    for p in people:
        if rng.random() < share:
            lat, lon = p.lat + rng.gauss(0, 0.01), p.lon + rng.gauss(0, 0.016)
            out.append(replace(p, lat=lat, lon=lon, ts=ts, status=AVAILABLE))
    return out


async def test_a_mirror_answers_as_the_redis_search_while_people_move(
    index: LiveIndex, mirror: LiveMirror
) -> None:
    rng = random.Random(11)
    people = scatter(rng, 1200, "p")
    await put(index, people)  # after the mirror's first copy: all of it comes through the log
    assert await agree(index, mirror, rng, 30) > 300
    for round_ in range(3):
        await put(index, moved(rng, people, 0.4, NOW - round_))
        for p in rng.sample(people, 40):
            await index.set_status(p.id, rng.choice((BUSY, AVAILABLE)))
        await index.mark_offline(rng.choice(people).id, NOW + 10)
        assert await agree(index, mirror, rng, 10) > 0
    assert mirror.copies == 1  # it followed the log the whole way


async def test_a_new_mirror_copies_the_index_as_it_stands(
    redis: aioredis.Redis, own: Settings, index: LiveIndex
) -> None:
    rng = random.Random(12)
    await put(index, scatter(rng, 800, "c"))
    late = LiveMirror(redis, own)
    task = asyncio.create_task(late.run())
    try:
        await until(lambda: late.ready, "the copy")
        assert len(late.index) == 800
        assert await agree(index, late, rng, 20) > 100
    finally:
        task.cancel()


async def test_a_search_sees_every_change_redis_had_before_it(
    index: LiveIndex, mirror: LiveMirror
) -> None:
    """No waiting in the test: the fix and the status change are in Redis when ``update`` and
    ``set_status`` return, and the very next search must see them."""
    plan = list(search_plan(*LEEDS, 1))
    args = dict(lat=LEEDS[0], lon=LEEDS[1], need=5, now=NOW, stale_after_s=STALE_S)
    for n in range(20):
        cid = f"s{n}"
        await put(index, [Person(cid, "ag0", LEEDS[0] + 0.001, LEEDS[1], NOW, AVAILABLE)])
        found = await mirror.search("ag0", plan, **args, change=await mirror.change_number())  # type: ignore[arg-type]
        assert found is not None and cid in [c.caregiver_id for c in found]
        await index.set_status(cid, BUSY)
        found = await mirror.search("ag0", plan, **args, change=await mirror.change_number())  # type: ignore[arg-type]
        assert found is not None and cid not in [c.caregiver_id for c in found]


async def test_a_gap_in_the_log_makes_a_new_copy(
    redis: aioredis.Redis, own: Settings, index: LiveIndex, mirror: LiveMirror
) -> None:
    rng = random.Random(13)
    people = scatter(rng, 300, "g")
    await put(index, people)
    await redis.incr(own.keys.live_seq())  # a change the log no longer holds
    await put(index, moved(rng, people, 0.5, NOW))
    await until(lambda: mirror.copies == 2 and mirror.ready, "a new copy")
    assert await agree(index, mirror, rng, 20) > 0


async def test_redis_losing_the_index_makes_a_new_copy(
    redis: aioredis.Redis, own: Settings, index: LiveIndex, mirror: LiveMirror
) -> None:
    """Every key of the namespace deleted, then new fixes: the copy holds only the new."""
    rng = random.Random(14)
    await put(index, scatter(rng, 300, "x"))
    await until(lambda: len(mirror.index) == 300, "the first fixes")
    await drop_namespace(own)
    fresh = scatter(rng, 50, "y")
    await put(index, fresh)
    await until(lambda: mirror.ready and len(mirror.index) == 50, "the new copy")
    assert mirror.copies == 2
    assert await agree(index, mirror, rng, 20) > 0


async def test_a_rebuild_of_cell_entries_makes_a_new_copy(
    redis: aioredis.Redis, own: Settings, index: LiveIndex, mirror: LiveMirror
) -> None:
    rng = random.Random(15)
    people = scatter(rng, 200, "r")
    await put(index, people)
    gone = people[0]
    cells = (own.keys.cell_prefix("street").encode(), own.keys.cell_prefix("area").encode())
    keys = [k async for k in redis.scan_iter(match=own.keys.everything(), count=1000)]
    for key in keys:  # her cell entries lost; her hash kept
        if key.startswith(cells):
            await redis.hdel(key, gone.id)
    added, _busy = await index.join_own_cells([gone.id])
    assert added == 2
    await until(lambda: mirror.copies == 2 and mirror.ready, "a new copy")
    assert mirror.index.entry_of(gone.id) is not None
    assert await agree(index, mirror, rng, 20) > 0


async def test_an_offline_caregiver_is_no_candidate_in_the_copy(
    index: LiveIndex, mirror: LiveMirror
) -> None:
    await put(index, [Person("o1", "ag1", *LEEDS, NOW, AVAILABLE)])
    assert await index.mark_offline("o1", NOW + 1)
    assert await mirror.caught_up()
    e = mirror.index.entry_of("o1")
    assert e is not None and e[6] == OFFLINE
    await index.update(
        [FixEvent(event_id="o1b", agency_id="ag1", caregiver_id="o1", lat=LEEDS[0], lon=LEEDS[1],
             ts=NOW + 2, received_at=NOW + 2)]
    )  # fmt: skip
    assert await mirror.caught_up()
    e = mirror.index.entry_of("o1")
    assert e is not None and e[6] == AVAILABLE and e[0] == NOW + 2


class LaggingMirror(LiveMirror):
    """A copy that reads its log late, as one busy with long batches does."""

    async def _follow(self) -> None:
        await asyncio.sleep(0.2)
        await super()._follow()


async def test_a_search_waits_for_a_lagging_copy_or_says_it_is_behind(
    redis: aioredis.Redis, own: Settings, index: LiveIndex
) -> None:
    lagging = LaggingMirror(redis, own)
    task = asyncio.create_task(lagging.run())
    try:
        await until(lambda: lagging.ready, "the copy")
        for n in range(3):
            await put(index, [Person(f"w{n}", "ag2", *LEEDS, NOW, AVAILABLE)])
            assert await lagging.caught_up(within_s=5.0)
            assert lagging.index.entry_of(f"w{n}") is not None
        await put(index, [Person("late", "ag2", *LEEDS, NOW, AVAILABLE)])
        assert not await lagging.caught_up(within_s=0.0)  # behind, and says so
        plan = list(search_plan(*LEEDS, 1))
        args = dict(lat=LEEDS[0], lon=LEEDS[1], need=5, now=NOW, stale_after_s=STALE_S)
        change = await lagging.change_number()
        found = await lagging.search("ag2", plan, **args, change=change)  # type: ignore[arg-type]
        assert found is None or "late" in [c.caregiver_id for c in found]  # never without her
        assert lagging.behind == (1 if found is None else 0)  # a search sent to Redis is counted
        assert await lagging.caught_up(within_s=5.0)
        found = await lagging.search("ag2", plan, **args, change=change)  # type: ignore[arg-type]
        assert found is not None and "late" in [c.caregiver_id for c in found]
    finally:
        task.cancel()
