"""``LiveIndex.search`` (one script call) against a brute force in Python over the same people,
and the dispatcher looking further when the roster rules out the nearest.

The brute force reads no sets: it walks the plan's steps over every caregiver, keeping those of
the agency whose cell lies in the step, fresh and available, until ``need`` are kept and then
one step more; the nearest ``need`` of those, ties by id, are the answer.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import h3
import pytest

from careknot.contracts import Fix
from careknot.storage.live import BUSY, LiveIndex, area_of, cell_of
from careknot.storage.postgres import Database
from careknot.storage.roster import Roster
from dispatch.eta import haversine_m
from dispatch.model import Candidate
from dispatch.ranking import SearchStep, search_plan
from streams.dispatcher import SEARCH_POOL
from tests.adapters import test_stores as stores
from tests.adapters.test_stores import SceneMaker

LEEDS = (53.800, -1.549)
NOW = 1_800_000_000.0
STALE_S = 120.0
AGENCIES = ("ag0", "ag1", "ag2")


@dataclass(frozen=True)
class Person:
    id: str
    agency: str
    lat: float
    lon: float
    ts: float
    status: str


# the scene maker of test_stores (the stores' fixtures come from conftest.py)
make_scene = stores.make_scene

pytestmark = pytest.mark.servers


async def put(live: LiveIndex, people: list[Person]) -> None:
    await live.update(
        [
            Fix(event_id=p.id, agency_id=p.agency, caregiver_id=p.id, lat=p.lat, lon=p.lon,
                ts=p.ts, received_at=p.ts)
            for p in people
        ]
    )  # fmt: skip
    for p in people:
        if p.status == BUSY:
            await live.set_status(p.id, BUSY)


def scatter(rng: random.Random, n: int, prefix: str) -> list[Person]:
    """People around Leeds: some close, most over ~30 km; some stale, some busy."""
    out = []
    for i in range(n):
        spread = 0.02 if rng.random() < 0.3 else 0.25
        ts = NOW - rng.choice((0.0, 30.0, 119.0, 121.0, 600.0))
        status = BUSY if rng.random() < 0.15 else "available"
        lat, lon = rng.gauss(LEEDS[0], spread), rng.gauss(LEEDS[1], spread * 1.6)
        out.append(Person(f"{prefix}{i}", rng.choice(AGENCIES), lat, lon, ts, status))
    return out


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
        for need in (1, 3, 10, 60):
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
