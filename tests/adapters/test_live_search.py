"""``LiveIndex.search`` (one script call) against a brute force in Python over the same people,
the cell entries it reads kept true by updates and status changes, cells skipped only when
they cannot matter, and the dispatcher looking further when the roster rules out the nearest.

The brute force reads no sets: it walks the plan's steps over every caregiver, keeping those of
the agency whose cell lies in the step, fresh and available, until ``need`` are kept and then
one step more; the nearest ``need`` of those, ties by id, are the answer.
"""

from __future__ import annotations

import math
import random

import h3
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from adapters.storage.live import AVAILABLE, BUSY, SHAPE, LiveIndex, cell_of, shape
from adapters.storage.postgres import Database
from adapters.storage.roster import Roster
from dispatch.candidates import area_of
from dispatch.eta import haversine_m
from dispatch.model import Candidate
from dispatch.ranking import SearchStep, search_plan
from kernel.contracts import FixEvent
from kernel.settings import Settings
from streams.candidate_search import SEARCH_POOL
from tests.adapters.live_people import AGENCIES, LEEDS, NOW, STALE_S, Person, put, scatter
from tests.adapters.scenes import SceneMaker

pytestmark = pytest.mark.servers


def brute_force(
    people: list[Person], agency: str, plan: list[SearchStep], lat: float, lon: float, need: int
) -> list[str]:
    kept: dict[str, float] = {}
    stop_after = None
    for n, step in enumerate(plan):
        cells = set(step.cells)
        for p in people:
            cell = cell_of(p.lat, p.lon)
            where = cell if step.level == "street" else area_of(cell)
            usable = p.status == "available" and NOW - p.ts <= STALE_S
            if p.agency == agency and where in cells and usable:
                kept[p.id] = haversine_m(lat, lon, p.lat, p.lon)
        if stop_after is None and len(kept) >= need:
            stop_after = n + 1
        if stop_after is not None and n >= stop_after:
            break
    return sorted(kept, key=lambda cid: (kept[cid], cid))[:need]


async def search(
    live: LiveIndex, agency: str, plan: list[SearchStep], lat: float, lon: float, need: int
) -> list[Candidate]:
    return await live.search(
        agency, plan, lat=lat, lon=lon, need=need, now=NOW, stale_after_s=STALE_S
    )


async def test_search_agrees_with_a_brute_force_for_random_homes(live: LiveIndex) -> None:
    rng = random.Random(20261122)
    people = scatter(rng, 1500, "r")
    await put(live, people)
    by_id = {p.id: p for p in people}
    for _ in range(60):
        agency = rng.choice(AGENCIES)
        lat, lon = rng.gauss(LEEDS[0], 0.15), rng.gauss(LEEDS[1], 0.25)
        plan = list(search_plan(lat, lon, rng.choice((1, 2, 3))))
        for need in (1, 3, 10, 60, 640):
            found = await search(live, agency, plan, lat, lon, need)
            assert [c.caregiver_id for c in found] == brute_force(
                people, agency, plan, lat, lon, need
            )
            for c in found:
                p = by_id[c.caregiver_id]
                assert (c.agency_id, c.lat, c.lon, c.ts, c.status) == (
                    p.agency, p.lat, p.lon, p.ts, "available"
                )  # fmt: skip


async def test_one_step_more_finds_someone_nearer_than_the_first_steps_nearest(
    live: LiveIndex,
) -> None:
    """Home at the centre of its street cell; ``far`` in the street disk's farthest corner,
    ``near`` just outside the disk (an area step) yet nearer: asked for one, ``near`` wins."""
    lat, lon = LEEDS[0] + 0.5, LEEDS[1]  # away from the random people
    plan = list(search_plan(lat, lon, 2))
    disk = set(plan[0].cells)
    corners = [v for cell in disk for v in _boundary(cell)]
    far = max(corners, key=lambda v: haversine_m(lat, lon, *v))
    d_far = haversine_m(lat, lon, *far)
    ring = [p for p in _ring_points(lat, lon) if cell_of(*p) not in disk]
    near = min(ring, key=lambda v: haversine_m(lat, lon, *v))
    assert haversine_m(lat, lon, *near) < d_far
    inward = (far[0] + (lat - far[0]) * 1e-3, far[1] + (lon - far[1]) * 1e-3)  # just inside
    people = [
        Person("x-far", "ag9", *inward, NOW, "available"),
        Person("x-near", "ag9", *near, NOW, "available"),
    ]
    await put(live, people)
    assert cell_of(*inward) in disk
    found = await search(live, "ag9", plan, lat, lon, 1)
    assert [c.caregiver_id for c in found] == ["x-near"]
    assert brute_force(people, "ag9", plan, lat, lon, 1) == ["x-near"]


async def test_stale_busy_and_other_agencies_are_never_returned(live: LiveIndex) -> None:
    lat, lon = LEEDS[0] - 0.6, LEEDS[1]
    people = [
        Person("s-stale", "ag8", lat, lon, NOW - STALE_S - 1, "available"),
        Person("s-busy", "ag8", lat, lon, NOW, BUSY),
        Person("s-other", "ag7", lat, lon, NOW, "available"),
        Person("s-ok", "ag8", lat + 0.01, lon, NOW - STALE_S, "available"),
    ]
    await put(live, people)
    found = await search(live, "ag8", list(search_plan(lat, lon, 3)), lat, lon, 5)
    assert [c.caregiver_id for c in found] == ["s-ok"]


def on_the_edges(rng: random.Random, cells: list[str], agency: str, prefix: str) -> list[Person]:
    """People on the cells' vertices, on their edges' midpoints and a hair (1 or 2 cm) off
    them: H3 decides which cell holds each, and the search must agree with the brute force.
    (The hairs differ in length, so that no two are equally near a home on a vertex: the
    brute force's haversine and the script's chord agree on order, not on the last bit.)"""
    out: list[Person] = []
    for cell in cells:
        corners = _boundary(cell)
        for (a, b), (c, d) in zip(corners, corners[1:] + corners[:1], strict=True):
            for lat, lon in ((a, b), ((a + c) / 2, (b + d) / 2)):
                for hair in (0.0, 1e-7, -2e-7):
                    ts = NOW - rng.choice((0.0, 60.0, STALE_S, STALE_S + 1))
                    status = BUSY if rng.random() < 0.1 else AVAILABLE
                    where = (lat + hair, lon - hair * 0.6)
                    out.append(Person(f"{prefix}{len(out)}", agency, *where, ts, status))
    return out


async def test_search_agrees_with_a_brute_force_on_cell_edges(live: LiveIndex) -> None:
    rng = random.Random(4711)
    centre = (LEEDS[0] + 1.1, LEEDS[1] + 0.4)  # away from the other tests' people
    plan = list(search_plan(*centre, 3))
    streets = list(plan[0].cells)
    areas = list(plan[1].cells)
    people = on_the_edges(rng, streets + areas, "edge0", "e")
    await put(live, people)
    homes = [centre, *(v for cell in streets[:4] + areas[:3] for v in _boundary(cell)[:3])]
    for lat, lon in homes:
        for rings in (1, 2, 3):
            home_plan = list(search_plan(lat, lon, rings))
            for need in (1, 4, 25, 200):
                found = await search(live, "edge0", home_plan, lat, lon, need)
                assert [c.caregiver_id for c in found] == brute_force(
                    people, "edge0", home_plan, lat, lon, need
                )


async def test_a_status_change_takes_her_out_of_every_cell_and_back(live: LiveIndex) -> None:
    lat, lon = LEEDS[0] + 1.6, LEEDS[1] - 0.3
    near = Person("st-near", "st0", lat + 0.001, lon, NOW, AVAILABLE)
    far = Person("st-far", "st0", lat + 0.02, lon, NOW, AVAILABLE)
    await put(live, [near, far])
    plan = list(search_plan(lat, lon, 3))
    by_street, by_area = plan, plan[1:]  # the street disk's cells, and the area cells alone

    async def nearest() -> list[list[str]]:
        return [
            [c.caregiver_id for c in await search(live, "st0", p, lat, lon, 1)]
            for p in (by_street, by_area)
        ]

    assert await nearest() == [["st-near"], ["st-near"]]
    await live.set_status(near.id, BUSY)
    assert await nearest() == [["st-far"], ["st-far"]]
    assert await live.update([_fix(near, NOW + 1)]) == {near.id: BUSY}  # she stays busy
    assert await nearest() == [["st-far"], ["st-far"]]
    await live.set_status(near.id, AVAILABLE)
    (c,) = await search(live, "st0", by_area, lat, lon, 1)
    assert (c.caregiver_id, c.ts, c.status) == (near.id, NOW + 1, AVAILABLE)


async def test_a_move_to_another_agency_moves_her_entries(live: LiveIndex) -> None:
    lat, lon = LEEDS[0] + 1.6, LEEDS[1] + 0.6
    her = Person("mv-her", "mv0", lat, lon, NOW, AVAILABLE)
    await put(live, [her])
    plan = list(search_plan(lat, lon, 2))
    assert [c.agency_id for c in await search(live, "mv0", plan, lat, lon, 1)] == ["mv0"]
    await live.update([_fix(Person(her.id, "mv1", lat, lon, NOW, AVAILABLE), NOW + 1)])
    assert await search(live, "mv0", plan, lat, lon, 1) == []
    assert [c.agency_id for c in await search(live, "mv1", plan, lat, lon, 1)] == ["mv1"]


async def test_a_cell_wholly_farther_than_the_need_th_is_not_read(
    live: LiveIndex, redis: aioredis.Redis, settings: Settings
) -> None:
    """An area cell of the home's area disk whose every point lies farther than the nearest
    two is made unreadable: asked for two the search never reads it, asked for more it does."""
    lat, lon = LEEDS[0] + 2.2, LEEDS[1]
    plan = list(search_plan(lat, lon, 3))
    close = [Person(f"sk{i}", "sk0", lat + 0.001 * i, lon, NOW, AVAILABLE) for i in (1, 2)]
    farthest = max(plan[1].cells, key=lambda cell: _nearest_point_m(cell, lat, lon))
    assert _nearest_point_m(farthest, lat, lon) > 1000
    t_lat, t_lon = h3.cell_to_latlng(farthest)
    await put(live, [*close, Person("sk-there", "sk0", t_lat, t_lon, NOW, AVAILABLE)])
    key = settings.keys.cell("area", "sk0", farthest)
    try:
        await redis.delete(key)
        await redis.set(key, "not a hash")  # reading it would fail
        found = await search(live, "sk0", plan, lat, lon, 2)
        assert [c.caregiver_id for c in found] == ["sk1", "sk2"]
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await search(live, "sk0", plan, lat, lon, 3)
    finally:
        await redis.delete(key)


async def test_without_the_cells_shapes_the_answers_are_the_same(
    live: LiveIndex, redis: aioredis.Redis, settings: Settings
) -> None:
    rng = random.Random(99)
    people = scatter(rng, 400, "ns")
    people = [Person(p.id, "ns0", p.lat + 3.0, p.lon, p.ts, p.status) for p in people]
    await put(live, people)
    asks = [(rng.gauss(LEEDS[0] + 3.0, 0.1), rng.gauss(LEEDS[1], 0.15), n) for n in (1, 5, 20)]
    with_shapes = [
        await search(live, "ns0", list(search_plan(a, b, 3)), a, b, n) for a, b, n in asks
    ]
    shapes = await redis.hgetall(settings.keys.shapes())
    assert len(shapes) > 10 and all(len(v) == SHAPE.size for v in shapes.values())
    await redis.delete(settings.keys.shapes())
    try:
        without = [
            await search(live, "ns0", list(search_plan(a, b, 3)), a, b, n) for a, b, n in asks
        ]
    finally:
        await redis.hset(settings.keys.shapes(), items=[x for kv in shapes.items() for x in kv])
    assert without == with_shapes
    assert [len(f) for f in with_shapes] == [1, 5, 20]


def test_a_shape_holds_its_whole_cell() -> None:
    rng = random.Random(5)
    for _ in range(200):
        cell = h3.latlng_to_cell(rng.uniform(-80, 80), rng.uniform(-180, 180), 6)
        x, y, z, reach = SHAPE.unpack(shape(cell))
        lat, lon = math.degrees(math.asin(z)), math.degrees(math.atan2(y, x))
        assert (lat, lon) == pytest.approx(h3.cell_to_latlng(cell), abs=1e-9)
        assert all(haversine_m(lat, lon, a, b) < reach for a, b in _boundary(cell))


async def test_ineligible_nearest_do_not_starve_the_wave(
    make_scene: SceneMaker, db: Database
) -> None:
    """More of the nearest than one search returns have an expired check: she beyond gets it."""
    ruled_out = SEARCH_POOL + 2
    s = await make_scene([100.0 * (i + 1) for i in range(ruled_out + 1)])
    roster = Roster(db)
    for i in range(ruled_out):
        await roster.set_certificate(s.w.cg(i), "dbs", s.clock.now - 1)
    assert await s.dispatcher.on_device_event(s.event()) is not None
    assert await s.offered() == [0] * ruled_out + [1]


def _fix(p: Person, ts: float) -> FixEvent:
    return FixEvent(event_id=f"{p.id}@{ts}", agency_id=p.agency, caregiver_id=p.id, lat=p.lat,
               lon=p.lon, ts=ts, received_at=ts)  # fmt: skip


def _nearest_point_m(cell: str, lat: float, lon: float) -> float:
    """How near the cell comes to (lat, lon), by its shape: a lower bound."""
    x, y, z, reach = SHAPE.unpack(shape(cell))
    c_lat, c_lon = math.degrees(math.asin(z)), math.degrees(math.atan2(y, x))
    return float(haversine_m(lat, lon, c_lat, c_lon) - reach)


def _boundary(cell: str) -> list[tuple[float, float]]:
    return [(a, b) for a, b in h3.cell_to_boundary(cell)]


def _ring_points(lat: float, lon: float) -> list[tuple[float, float]]:
    """Points on circles of 0.5 to 3 km around the home, every 2 degrees."""
    out = []
    for r_m in range(500, 3000, 25):
        for deg in range(0, 360, 2):
            b = math.radians(deg)
            out.append((lat + r_m * math.cos(b) / 111_195, lon + r_m * math.sin(b) / 69_000))
    return out
