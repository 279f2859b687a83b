"""The batched fix paths are exact: what is published once is kept once.

Fixes go through the real Mosquitto into an in-process :class:`IngestService` (batched, fast
path), out of Kafka, and through the worker's batch step (``streams.fix_flow.apply_fixes``) into
Redis and the history in Postgres; duplicates and late fixes among them. Location frames to
dispatchers are coalesced by a :class:`LocationThrottle` and still deliver each caregiver's latest
position.
No timing is asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from adapters.metrics import FixMetrics
from adapters.storage import outbox
from adapters.storage.history import History
from adapters.storage.postgres import CaregiverRow, Database
from geofence.quality import AgencyPolicies
from ingest.batching import partition_of
from ingest.fast_path import fast_fix
from ingest.parse import Limits, parse_location, route
from ingest.service import EMERGENCIES, POSITIONS, TELEMETRY, IngestService, Streams
from kernel import recipients
from kernel.contracts import FixEvent
from kernel.errors import RejectedPayload
from kernel.settings import Settings
from streams.fix_flow import apply_fixes, decode_fixes
from streams.runtime import Runtime
from tests.support import free_port, scrape

TAG = uuid.uuid4().hex[:8]
AGENCY = f"tp-{TAG}"
CAREGIVERS = [f"tp-{TAG}-{i}" for i in range(12)]
STEPS = 8
WITHIN_S = 30.0
T0 = int(time.time()) - 600

pytestmark = pytest.mark.servers


def location(i: int, step: int) -> dict[str, Any]:
    return {
        "_type": "location",
        "lat": 53.80 + i * 0.01 + step * 0.0001,
        "lon": -1.55,
        "tst": T0 + step,
        "acc": 9,
        "batt": 70,
    }


# ---------------------------------------------------------------- the fast path (pure)

PAYLOADS: list[Any] = [
    {"lat": 53.8, "lon": -1.5, "tst": T0},
    {"_type": "location", "lat": 53, "lon": -1, "tst": T0, "acc": 5, "vel": 0, "batt": 100},
    {"lat": 53.8, "lon": -1.5, "tst": T0, "cog": 270.5, "alt": -3, "extra": [1, 2]},
    {"lat": "53.8", "lon": -1.5, "tst": T0},  # a string the parser may coerce
    {"lat": 53.8, "lon": -1.5, "tst": float(T0)},
    {"lat": 53.8, "lon": -1.5, "tst": True},
    {"lat": 91.0, "lon": -1.5, "tst": T0},
    {"lat": 53.8, "lon": -1.5, "tst": 0},
    {"lat": 53.8, "lon": -1.5, "tst": T0, "acc": -1},
    {"lat": 53.8, "lon": -1.5, "tst": T0, "batt": 101},
    {"lat": 53.8, "lon": -1.5, "tst": T0, "batt": 50.0},
    {"lat": 53.8, "lon": -1.5, "tst": T0 + 10_000},  # from the future
    {"_type": "card", "lat": 53.8, "lon": -1.5, "tst": T0},
    {"_type": None, "lat": 53.8, "lon": -1.5, "tst": T0},
    {"lon": -1.5, "tst": T0},
    [53.8, -1.5],
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_fast_path_gives_what_the_parser_gives(payload: Any) -> None:
    topic, now, limits = f"ck/{AGENCY}/cg/cg-1/loc", float(T0 + 5), Limits()
    raw = orjson.dumps(payload)
    fast = fast_fix(route(topic), raw, now, limits)
    try:
        parsed: FixEvent | None = parse_location(route(topic), topic, raw, now, limits)
    except RejectedPayload:
        parsed = None
    if any(payload is plain for plain in PAYLOADS[:3]):
        assert fast is not None  # plain locations take the fast path
    if fast is not None:  # the fast path never accepts what the parser refuses
        assert parsed is not None
        assert FixEvent.model_validate_json(fast) == parsed


# ---------------------------------------------------------------- the throttle (pure)


def test_the_throttle_sends_each_caregivers_latest_position_within_its_limits() -> None:
    throttle = outbox.LocationThrottle(every_s=1.0, per_agency=5)
    for step in range(3):
        for cg in CAREGIVERS:
            throttle.offer(AGENCY, cg, {"caregiver_id": cg, "step": step})
    sent: list[list[dict[str, Any]]] = []
    now = 100.0
    while throttle.waiting:
        [(recipient, frames)] = throttle.due(now)
        assert recipient == recipients.dispatchers(AGENCY)
        sent.append(frames)
        assert throttle.due(now + 0.5) == []  # not twice within every_s
        now += 1.0
    assert all(len(frames) <= 5 for frames in sent)
    assert all(len({f["caregiver_id"] for f in frames}) == len(frames) for frames in sent)
    every = [f for frames in sent for f in frames]
    assert sorted(f["caregiver_id"] for f in every) == sorted(CAREGIVERS)
    assert {f["step"] for f in every} == {2}


# ---------------------------------------------------------------- through the servers


@pytest.fixture(scope="module")
async def settings(migrated: Settings) -> AsyncIterator[Settings]:
    own = migrated.model_copy(
        update={"mqtt_share_group": f"test-tp-{TAG}", "ingest_metrics_port": free_port()}
    )
    async with Database(own) as db:
        await db.upsert_agency(AGENCY, "Throughput Care")
        await db.upsert_caregivers([CaregiverRow(cg, AGENCY, cg) for cg in CAREGIVERS])
    yield own


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[IngestService]:
    async with IngestService(settings) as service:
        task = asyncio.create_task(service.run(), name="ingest-under-test")
        await asyncio.wait_for(service.subscribed.wait(), WITHIN_S)
        yield service
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize(
    ("streams", "topics"),
    [
        ("positions", POSITIONS),
        ("emergencies", EMERGENCIES),
        ("telemetry", TELEMETRY),
        ("all", POSITIONS + EMERGENCIES + TELEMETRY),
    ],
)
async def test_an_ingest_of_one_stream_subscribes_to_its_topics_alone(
    settings: Settings, streams: Streams, topics: tuple[str, ...]
) -> None:
    """``careknot up`` runs an ingest of positions, one of device events and one of
    telemetry."""
    own = settings.model_copy(update={"ingest_metrics_port": 0})
    async with IngestService(own) as service:
        task = asyncio.create_task(service.run(streams))
        try:
            await asyncio.wait_for(service.subscribed.wait(), WITHIN_S)
            got = service.subscriptions
            plain = [t.split("/", 2)[2] if t.startswith("$share/") else t for t in got]
            assert sorted(plain) == sorted(topics)
            shared = {t for t in got if t.startswith("$share/")}
            # the floods are shared among ingests; device events never (each takes every one)
            floods = POSITIONS + TELEMETRY
            assert {t.split("/", 2)[2] for t in shared} == (
                {t for t in topics if t in floods} if own.mqtt_shared_subscriptions else set()
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def publications() -> list[tuple[str, bytes]]:
    """Every caregiver's fixes in order, then duplicates of some, then late ones for others
    (published after a newer fix): what phones on a bad network send."""
    out = []
    for step in range(STEPS):
        for i, cg in enumerate(CAREGIVERS):
            if not (i % 3 == 0 and step == STEPS - 2):  # held back: published late
                out.append((cg, location(i, step)))
    out += [(cg, location(i, 3)) for i, cg in enumerate(CAREGIVERS) if i % 2 == 0]
    out += [(cg, location(i, STEPS - 2)) for i, cg in enumerate(CAREGIVERS) if i % 3 == 0]
    return [(f"ck/{AGENCY}/cg/{cg}/loc", orjson.dumps(p)) for cg, p in out]


async def fixes_on_kafka(settings: Settings, expected: int) -> list[tuple[int, FixEvent]]:
    """This agency's fixes on the fixes topic with their partitions, in the order of each
    partition, once ``expected`` of them are there."""
    consumer = AIOKafkaConsumer(
        settings.keys.topic("fixes"),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    found: list[tuple[int, FixEvent]] = []
    await consumer.start()
    try:
        async with asyncio.timeout(WITHIN_S):
            while len(found) < expected:
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    fixes = decode_fixes([r.value for r in records if r.value])
                    found += [(tp.partition, f) for f in fixes if f.agency_id == AGENCY]
    finally:
        await consumer.stop()
    return found


def check_partitioned(
    settings: Settings, sent: list[tuple[str, bytes]], found: list[tuple[int, FixEvent]]
) -> None:
    """Each caregiver's fixes sit in her key's partition, in the order she published them."""
    published: dict[str, list[float]] = {}
    for topic, payload in sent:
        published.setdefault(topic.split("/")[3], []).append(float(orjson.loads(payload)["tst"]))
    on_kafka: dict[str, list[float]] = {}
    for p, f in found:
        assert p == partition_of(f.caregiver_id, settings.kafka_partitions)
        on_kafka.setdefault(f.caregiver_id, []).append(f.ts)
    assert on_kafka == published
    assert len({p for p, _ in found}) > 1  # the caregivers are spread, not all in one


async def test_published_fixes_reach_redis_and_the_history_exactly_once(
    settings: Settings, ingest: IngestService
) -> None:
    sent = publications()
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as client:
        for topic, payload in sent:
            await client.publish(topic, payload, qos=1)
    found = await fixes_on_kafka(settings, len(sent))
    assert len(found) == len(sent)  # ingest produced each message once
    check_partitioned(settings, sent, found)
    values = [f for _, f in found]
    rt = await Runtime(settings).ready()
    throttle = outbox.LocationThrottle()
    try:
        history = History(rt.db)
        for n in range(0, len(values), 25):  # batches, as the worker takes them
            batch = values[n : n + 25]
            await apply_fixes(rt, batch, history, AgencyPolicies(), FixMetrics(), throttle)
        await check_history(rt)
        await check_live(settings)
        await check_frames(rt, throttle)
    finally:
        await rt.close()


async def check_history(rt: Runtime) -> None:
    rows = await rt.db.pool.fetch(
        "SELECT caregiver_id, extract(epoch FROM ts)::bigint AS t, live FROM fixes"
        " WHERE agency_id = $1",
        AGENCY,
    )
    kept = Counter((r["caregiver_id"], r["t"]) for r in rows)
    assert kept == {(cg, T0 + step): 1 for cg in CAREGIVERS for step in range(STEPS)}
    late = {(r["caregiver_id"], r["t"]) for r in rows if not r["live"]}
    assert late == {(cg, T0 + STEPS - 2) for i, cg in enumerate(CAREGIVERS) if i % 3 == 0}


async def check_live(settings: Settings) -> None:
    r = aioredis.Redis.from_url(settings.redis_url)
    try:
        for cg in CAREGIVERS:
            assert float(await r.hget(settings.keys.caregiver(cg), "ts") or 0) == T0 + STEPS - 1
    finally:
        await r.aclose()


async def check_frames(rt: Runtime, throttle: outbox.LocationThrottle) -> None:
    """Once the throttle is flushed, the dispatchers' last frame of each caregiver is her
    latest position, and no caregiver had two frames in one flush."""
    now = time.time()
    while throttle.waiting:
        now += throttle.every_s
        await outbox.flush_due(rt.outbox, throttle, now)
    recipient = recipients.dispatchers(AGENCY)
    frames = [orjson.loads(m) for m in await rt.outbox.since(recipient, 0)]
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    last = {f["caregiver_id"]: f for f in frames if f["type"] == "location"}
    assert set(last) == set(CAREGIVERS)
    for i, cg in enumerate(CAREGIVERS):
        assert last[cg]["ts"] == T0 + STEPS - 1
        assert last[cg]["lat"] == pytest.approx(location(i, STEPS - 1)["lat"])


async def test_an_unknown_caregiver_in_a_batch_is_dead_lettered_and_the_rest_go_on(
    settings: Settings,
) -> None:
    """The registry is asked about a batch's publishers at once; each message is still judged
    on its own."""
    async with IngestService(settings.model_copy(update={"ingest_metrics_port": 0})) as service:
        stranger = f"ck/{AGENCY}/cg/nobody-{TAG}/loc"
        good = f"ck/{AGENCY}/cg/{CAREGIVERS[0]}/loc"
        payload = orjson.dumps(location(0, STEPS + 5))
        await service.handle_batch([(stranger, payload), (good, payload)])
        assert counted(service, "careknot_ingest_rejected_total") == {"unknown_caregiver": 1.0}
        assert counted(service, "careknot_ingest_fixes_accepted_total") == {"": 1.0}


async def test_known_answers_let_through_only_a_caregiver_of_the_topics_agency(
    settings: Settings,
) -> None:
    """Once the registry's answers are cached, a fix is taken without asking again, but only
    from a caregiver registered to the topic's agency: the second batch is judged as the first."""
    async with IngestService(settings.model_copy(update={"ingest_metrics_port": 0})) as service:
        stranger = f"ck/{AGENCY}/cg/nobody-{TAG}/loc"
        elsewhere = f"ck/other-{TAG}/cg/{CAREGIVERS[0]}/loc"
        good = f"ck/{AGENCY}/cg/{CAREGIVERS[0]}/loc"
        for step in (STEPS + 6, STEPS + 7):
            payload = orjson.dumps(location(0, step))
            await service.handle_batch([(stranger, payload), (elsewhere, payload), (good, payload)])
        assert counted(service, "careknot_ingest_rejected_total") == {
            "unknown_caregiver": 2.0,
            "caregiver_agency_mismatch": 2.0,
        }
        assert counted(service, "careknot_ingest_fixes_accepted_total") == {"": 2.0}


def counted(service: IngestService, name: str) -> dict[str, float]:
    return {
        s.labels.get("reason", ""): s.value
        for m in service.metrics.registry.collect()
        for s in m.samples
        if s.name == name and s.value
    }


def fix_at(
    cg: str, t: float, received_at: float, lat: float = 53.8, lon: float = -1.55
) -> FixEvent:
    return FixEvent(
        event_id=f"{cg}:{t}",
        agency_id=AGENCY,
        caregiver_id=cg,
        lat=lat,
        lon=lon,
        ts=t,
        received_at=received_at,
    )


async def test_the_worker_serves_its_counts_and_lag(settings: Settings) -> None:
    own = settings.model_copy(update={"worker_metrics_port": free_port()})
    cg, t0 = f"tp-metrics-{TAG}", time.time() - 30
    async with Database(own) as db:
        await db.upsert_caregivers([CaregiverRow(cg, AGENCY, cg)])
    good = [fix_at(cg, t0 + n, received_at=t0 + n + 0.5) for n in range(3)]
    bad = fix_at(cg, t0 + 5, received_at=time.time() - 2.0, lat=0.0, lon=0.0)  # null island
    rt = await Runtime(own).ready()
    try:
        batch = [*good, good[2], bad]
        await apply_fixes(rt, batch, History(rt.db), AgencyPolicies(), rt.fix_metrics)
        text = await scrape(own.worker_metrics_port)
    finally:
        await rt.close()
    assert text.startswith("HTTP/1.1 200")
    lines = [line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("careknot_")]
    counts = {k: float(v) for k, v in lines}
    fixes = "careknot_worker_fixes_total"
    assert counts[f'{fixes}{{reason="",verdict="accept"}}'] == 3
    assert counts[f'{fixes}{{reason="duplicate",verdict="history_only"}}'] == 1
    assert counts[f'{fixes}{{reason="null_island",verdict="drop"}}'] == 1
    assert 2.0 <= counts["careknot_worker_fix_lag_seconds"] < 60.0


async def test_a_phones_status_becomes_a_presence_record(
    settings: Settings, ingest: IngestService
) -> None:
    """``offline`` (its last will) and ``online`` from a registered phone become presence
    records; a stranger's and a garbled status are dead-lettered with their reasons."""
    cg, stranger = CAREGIVERS[1], f"nobody-{TAG}"
    sent = [
        (f"ck/{AGENCY}/cg/{cg}/status", b"offline"),
        (f"ck/{AGENCY}/cg/{stranger}/status", b"offline"),
        (f"ck/{AGENCY}/cg/{cg}/status", b"gone fishing"),
        (f"ck/{AGENCY}/cg/{cg}/status", b"online"),
    ]
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as client:
        for topic, payload in sent:
            await client.publish(topic, payload, qos=1)
    found = await records_until(settings, ("presence", "deadletter"), 4)
    presence = [r for t, r in found if t == "presence" and r["caregiver_id"] == cg]
    assert [(p["online"], p["agency_id"]) for p in presence] == [(False, AGENCY), (True, AGENCY)]
    letters = {r["source"]: r["reason"] for t, r in found if t == "deadletter"}
    assert letters == {
        f"ck/{AGENCY}/cg/{stranger}/status": "unknown_caregiver",
        f"ck/{AGENCY}/cg/{cg}/status": "bad_status",
    }


def _about_status(record: dict[str, Any]) -> bool:
    """A presence record or dead letter from this module's status topics."""
    source = str(record.get("source", ""))
    return TAG in source and source.endswith("/status")


async def records_until(
    settings: Settings, topics: tuple[str, ...], expected: int
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, record) of this module's status records on ``topics``, once ``expected`` are
    there."""
    consumer = AIOKafkaConsumer(
        *(settings.keys.topic(t) for t in topics),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    names = {settings.keys.topic(t): t for t in topics}
    found: list[tuple[str, dict[str, Any]]] = []
    await consumer.start()
    try:
        async with asyncio.timeout(WITHIN_S):
            while len(found) < expected:
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    values = [orjson.loads(r.value) for r in records if r.value]
                    found += [(names[tp.topic], v) for v in values if _about_status(v)]
    finally:
        await consumer.stop()
    return found
