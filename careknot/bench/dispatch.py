"""``careknot bench dispatch``: candidate search over 100,000 live caregivers across England.

Three answers to one question, "the nearest caregivers of this agency around this home",
asked for the same homes, one at a time:

- ``search``: the dispatcher's own, exactly as :mod:`streams.dispatcher` runs it: in the
  worker's in-memory copy of the live index (:mod:`adapters.storage.live_mirror`, copied from
  Redis and following its change log), H3 street disk, then area rings, only the nearest
  ``k``; then ranking by ETA. The dispatcher reads the index's *change number* (its last change's
  number, one small Redis round trip) at the same time as the incident's offers from Postgres,
  so it is read before the timer starts; ``search_synced`` times the change's read too;
- ``redis_search``: the same search by one script in the Redis live index (what the dispatcher
  falls back to while its copy is not ready);
- ``geosearch``: Redis ``GEOSEARCH ... BYRADIUS ... ASC COUNT k`` on a geo set per agency;
- ``postgis``: ``ST_DWithin`` on a ``geography`` column with a GiST index, nearest first
  (the classic way; skipped, and said so, where PostGIS is not installed).

The nearest ``k`` of each are compared (as sets) and the agreement is reported. Caregivers are
placed around English cities and uniformly over the country (seeded), in ``--agencies``
agencies. Afterwards every caregiver moves a little once, through :meth:`LiveIndex.update` in
batches of 1,000, and the rate is reported (``update_fixes_per_s``: the ingest's side of the
index's layout). The load average before and after is kept with the figures, since searches
on a shared machine are slowed by its load.

Then, part (2): fall to offer through the whole system while simulated phones load it with
``--fall-load`` fixes a second (default 5,000; :mod:`careknot.bench.fall_to_offer`, ``--falls``
falls, default 100); ``--fall-load 0`` skips it. Its ``fall_to_offer_p50_ms`` and
``fall_to_offer_p99_ms`` join the figures.

Options (``careknot bench dispatch --help``): ``--caregivers N --agencies N --searches N --k N
--radius-km R --seed S --fall-load FIXES_PER_S --falls N``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from adapters.storage.live import LiveIndex
from adapters.storage.live_mirror import LiveMirror
from adapters.storage.namespace import drop_namespace
from careknot.bench import fall_to_offer, own_options
from careknot.bench.fall_to_offer import Load
from careknot.bench.report import latency_figures, machine, write
from dispatch.eta import StraightLineModel
from dispatch.model import Candidate
from dispatch.ranking import rank, search_plan
from kernel.contracts import FixEvent
from kernel.settings import Settings

log = logging.getLogger(__name__)

# (lat, lon, weight): where people live, roughly
CITIES = (
    (51.507, -0.128, 9.0), (52.486, -1.890, 3.0), (53.480, -2.243, 3.0), (53.800, -1.549, 2.0),
    (53.408, -2.991, 1.5), (54.978, -1.617, 1.2), (51.454, -2.588, 1.2), (53.381, -1.470, 1.2),
    (52.954, -1.158, 1.0), (52.637, -1.139, 0.8), (50.376, -4.143, 0.5), (50.909, -1.404, 0.6),
    (52.205, 0.119, 0.4), (51.752, -1.258, 0.4), (54.597, -1.234, 0.4), (53.744, -0.333, 0.6),
    (52.628, 1.299, 0.4), (50.822, -0.137, 0.6), (52.406, -1.519, 0.7), (53.991, -1.541, 0.2),
)  # fmt: skip
ENGLAND = ((50.2, 55.5), (-5.2, 1.6))  # lat, lon bounds for the rural share
URBAN_SHARE = 0.7
WARMUP = 50
Point = tuple[float, float]
Search = Callable[..., Awaitable[list[Candidate] | None]]


def place(rng: random.Random) -> Point:
    if rng.random() < URBAN_SHARE:
        lat, lon, _w = rng.choices(CITIES, weights=[c[2] for c in CITIES])[0]
        return rng.gauss(lat, 0.1), rng.gauss(lon, 0.16)
    return rng.uniform(*ENGLAND[0]), rng.uniform(*ENGLAND[1])


async def run(settings: Settings, args: argparse.Namespace) -> int:
    opts = own_options("dispatch", args)
    bench = settings.model_copy(update={"namespace": f"bench{secrets.token_hex(3)}"})
    rng = random.Random(opts.seed)
    people = [(f"cg{i}", f"ag{i % opts.agencies}", *place(rng)) for i in range(opts.caregivers)]
    homes = [(f"ag{rng.randrange(opts.agencies)}", *place(rng)) for _ in range(opts.searches)]
    redis = aioredis.Redis.from_url(bench.redis_url)
    conn = await asyncpg.connect(bench.postgres_dsn)
    try:
        figures = await _measure(bench, opts, redis, conn, people, homes)
    finally:
        await conn.close()
        await redis.aclose()
        await drop_namespace(bench)
    if opts.fall_load:
        loaded = await fall_to_offer.measure(settings, falls=opts.falls, load=Load(opts.fall_load))
        figures["fall_to_offer"] = loaded
        figures["fall_to_offer_p50_ms"] = loaded.get("fall_to_offer_p50_ms")
        figures["fall_to_offer_p99_ms"] = loaded.get("fall_to_offer_p99_ms")
    target = write(args.output, "dispatch.json", figures)
    for key in (
        "search_p50_ms", "search_p99_ms", "search_synced_p99_ms", "redis_search_p99_ms",
        "geosearch_p99_ms", "postgis_p99_ms",
    ):  # fmt: skip
        print(f"{key:>20}: {figures.get(key)}")
    print(f"{'speedup_vs_postgis':>20}: {figures.get('speedup_vs_postgis')}")
    print(f"{'agreement':>20}: {figures['agreement']}")
    print(f"{'update_fixes_per_s':>20}: {figures['update_fixes_per_s']}")
    print(f"{'load_average':>20}: {figures['load_average']}")
    for key in ("fall_to_offer_p50_ms", "fall_to_offer_p99_ms"):
        print(f"{key:>20}: {figures.get(key)} (under {opts.fall_load} fixes/s)")
    print(f"written to {target}")
    return 0


async def _measure(
    s: Settings,
    opts: argparse.Namespace,
    redis: aioredis.Redis,
    conn: asyncpg.Connection[Any],
    people: list[tuple[str, str, float, float]],
    homes: list[tuple[str, float, float]],
) -> dict[str, Any]:
    live = LiveIndex(redis, s)
    now = time.time()
    await _load_live(live, redis, s, people, now)
    has_postgis = await _load_postgis(conn, s, people)
    mirror = LiveMirror(redis, s)
    following = asyncio.create_task(mirror.run())
    copy_s = await _copied(mirror)
    load_before = os.getloadavg()
    radius_m = opts.radius_km * 1000
    try:
        ours = await _timed(
            homes,
            lambda h, change: _search(
                partial(mirror.search, change=change), s, h, opts.k, radius_m
            ),
            before=mirror.change_number,
        )
        synced = await _timed(homes, lambda h, _: _synced(mirror, s, h, opts.k, radius_m))
    finally:
        following.cancel()
    in_redis = await _timed(homes, lambda h, _: _search(live.search, s, h, opts.k, radius_m))
    geo = await _timed(homes, lambda h, _: _geosearch(redis, s, h, opts.k, radius_m))
    figures: dict[str, Any] = {
        "caregivers": opts.caregivers,
        "agencies": opts.agencies,
        "searches": opts.searches,
        "k": opts.k,
        "radius_km": opts.radius_km,
        **latency_figures(ours[0], "search"),
        **latency_figures(synced[0], "search_synced"),
        **latency_figures(in_redis[0], "redis_search"),
        **latency_figures(geo[0], "geosearch"),
        "mirror_copy_s": round(copy_s, 2),
        "agreement": {
            "search_vs_geosearch": _agreement(ours[1], geo[1], opts.k),
            "search_vs_redis_search": _agreement(ours[1], in_redis[1], opts.k),
        },
        "fall_to_offer_p50_ms": None,  # part (2): not measured by this run
        "fall_to_offer_p99_ms": None,
        "machine": machine(),
    }
    if has_postgis:
        pg = await _timed(homes, lambda h, _: _postgis(conn, h, opts.k, radius_m))
        figures.update(latency_figures(pg[0], "postgis"))
        figures["agreement"]["geosearch_vs_postgis"] = _agreement(geo[1], pg[1], opts.k)
        figures["agreement"]["search_vs_postgis"] = _agreement(ours[1], pg[1], opts.k)
        figures["speedup_vs_postgis"] = round(
            figures["postgis_p99_ms"] / figures["search_p99_ms"], 1
        )
    else:
        figures.update(postgis_p99_ms=None, speedup_vs_postgis=None)
    figures["load_average"] = {"before": load_before, "after": os.getloadavg()}
    figures["update_fixes_per_s"] = round(await _update_rate(live, people, now + 1))
    return figures


async def _load_live(
    live: LiveIndex,
    redis: aioredis.Redis,
    s: Settings,
    people: list[tuple[str, str, float, float]],
    now: float,
) -> None:
    for i in range(0, len(people), 1000):
        chunk = people[i : i + 1000]
        fixes = [
            FixEvent(
                event_id=c, agency_id=a, caregiver_id=c, lat=la, lon=lo, ts=now, received_at=now
            )
            for c, a, la, lo in chunk
        ]
        await live.update(fixes)
        async with redis.pipeline(transaction=False) as pipe:
            for c, a, la, lo in chunk:
                pipe.geoadd(s.keys.geo(a), (lo, la, c))
            await pipe.execute()


async def _update_rate(
    live: LiveIndex, people: list[tuple[str, str, float, float]], now: float
) -> float:
    """Fixes per second through :meth:`LiveIndex.update`, everyone moving ~200 m, 1,000 a call."""
    rng = random.Random(11)
    fixes = [
        FixEvent(event_id=f"{c}@{now}", agency_id=a, caregiver_id=c, lat=la + rng.gauss(0, 0.002),
            lon=lo + rng.gauss(0, 0.003), ts=now, received_at=now)
        for c, a, la, lo in people
    ]  # fmt: skip
    t0 = time.perf_counter()
    for i in range(0, len(fixes), 1000):
        await live.update(fixes[i : i + 1000])
    return len(fixes) / (time.perf_counter() - t0)


async def _load_postgis(
    conn: asyncpg.Connection[Any], s: Settings, people: list[tuple[str, str, float, float]]
) -> bool:
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    except asyncpg.PostgresError as exc:
        log.warning("no PostGIS here (%s): its column is left out", exc)
        return False
    ns = s.namespace
    await conn.execute(f'CREATE SCHEMA "{ns}"; SET search_path = "{ns}", public')
    await conn.execute(
        "CREATE TABLE live_cg (id text PRIMARY KEY, agency_id text NOT NULL,"
        " lat float8 NOT NULL, lon float8 NOT NULL, geog geography(Point, 4326))"
    )
    await conn.copy_records_to_table(
        "live_cg", records=people, columns=["id", "agency_id", "lat", "lon"]
    )
    await conn.execute(
        "UPDATE live_cg SET geog = ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography;"
        " CREATE INDEX live_cg_geog ON live_cg USING gist (geog); ANALYZE live_cg"
    )
    return True


async def _copied(mirror: LiveMirror) -> float:
    """Seconds until the mirror holds its first copy of the index."""
    t0 = time.perf_counter()
    await mirror.wait_ready()
    return time.perf_counter() - t0


async def _synced(
    mirror: LiveMirror, s: Settings, home: tuple[str, float, float], k: int, radius_m: float
) -> list[str]:
    """The search in the copy with its own read of the change first."""
    change = await mirror.change_number()
    return await _search(partial(mirror.search, change=change), s, home, k, radius_m)


async def _search(
    search: Search, s: Settings, home: tuple[str, float, float], k: int, radius_m: float
) -> list[str]:
    """A search as the dispatcher runs it; its answer cut at ``radius_m`` to compare like with
    like."""
    agency, lat, lon = home
    now = time.time()
    found = await search(
        agency,
        search_plan(lat, lon, s.search_area_rings),
        lat=lat,
        lon=lon,
        need=k,
        now=now,
        stale_after_s=s.position_stale_s,
    )
    if found is None:
        raise RuntimeError("the live index's copy fell behind during the benchmark")
    ranked = rank(
        found,
        agency_id=agency,
        lat=lat,
        lon=lon,
        model=StraightLineModel(),
        now=now,
        stale_after_s=s.position_stale_s,
    )
    return [r.candidate.caregiver_id for r in ranked[:k] if r.distance_m <= radius_m]


async def _geosearch(
    redis: aioredis.Redis, s: Settings, home: tuple[str, float, float], k: int, radius_m: float
) -> list[str]:
    agency, lat, lon = home
    found = await redis.geosearch(
        s.keys.geo(agency), longitude=lon, latitude=lat, radius=radius_m, unit="m",
        sort="ASC", count=k,
    )  # fmt: skip
    return [m.decode() if isinstance(m, bytes) else str(m) for m in found]


async def _postgis(
    conn: asyncpg.Connection[Any], home: tuple[str, float, float], k: int, radius_m: float
) -> list[str]:
    agency, lat, lon = home
    rows = await conn.fetch(
        "SELECT id FROM live_cg, (SELECT ST_SetSRID(ST_MakePoint($2, $3), 4326)::geography AS p) q"
        " WHERE agency_id = $1 AND ST_DWithin(geog, q.p, $4)"
        " ORDER BY ST_Distance(geog, q.p) LIMIT $5",
        agency, lon, lat, radius_m, k,
    )  # fmt: skip
    return [r["id"] for r in rows]


async def _nothing() -> None:
    return None


async def _timed(
    homes: list[tuple[str, float, float]],
    search: Callable[[tuple[str, float, float], Any], Awaitable[list[str]]],
    before: Callable[[], Awaitable[Any]] = _nothing,
) -> tuple[list[float], list[list[str]]]:
    """Per-search milliseconds and answers, after a warm-up on the first homes; ``before``
    (untimed) gives each search what the dispatcher has in hand when it searches."""
    for home in homes[:WARMUP]:
        await search(home, await before())
    samples, answers = [], []
    for home in homes:
        ready = await before()
        t0 = time.perf_counter()
        answers.append(await search(home, ready))
        samples.append((time.perf_counter() - t0) * 1000)
    return samples, answers


def _agreement(a: list[list[str]], b: list[list[str]], k: int) -> float:
    """The share of searches whose nearest ``k`` are the same caregivers both ways."""
    same = sum(set(x[:k]) == set(y[:k]) for x, y in zip(a, b, strict=True))
    return round(same / len(a), 4)
