"""The vitals worker's step (``streams.vitals_flow.VitalsPipeline``, what its agent does with
each batch it takes from Kafka) on the real Postgres, Redis and Kafka: a heart racing for five
minutes raises a tachycardia alarm for the patient, told to her agency's dispatchers; a single
wild reading from a loose sensor raises nothing; the alarm clears once her heart has been back
under the clearing line for a minute; every sample is kept once, and a device nobody registered
is dead-lettered; a batch parked is parked a sample a letter, each replayable whole."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from adapters.storage.alarms import AlarmStore
from adapters.storage.connection import RedisConnection
from adapters.storage.postgres import Database
from adapters.storage.vitals import VitalsStore
from kernel import keys, recipients
from kernel.contracts import TelemetrySample
from kernel.settings import Settings
from streams.runtime import Runtime
from streams.vitals_flow import VitalsPipeline, decode_samples, source_of
from tests.adapters.scenes import World, seed
from tests.support import kafka_reader

pytestmark = pytest.mark.servers

EVERY_S = 30.0


@pytest.fixture
async def pipeline(settings: Settings, db: Database) -> AsyncIterator[VitalsPipeline]:
    rt = await Runtime(settings, dispatching=False, counting_fixes=False).ready()
    try:
        yield VitalsPipeline(rt, settings)
    finally:
        await rt.close()


def packed(w: World, start: float, heart: list[float], device: str | None = None) -> bytes:
    """A Kafka message of samples as ingest packs them: one every 30 s from ``start``."""
    samples = [
        TelemetrySample(
            agency_id=w.agency,
            device_id=device or w.device.id,
            ts=start + i * EVERY_S,
            seq=i,
            hr=hr,
            spo2=97.0,
            received_at=start + i * EVERY_S,
        ).model_dump()
        for i, hr in enumerate(heart)
    ]
    return orjson.dumps(samples)


async def alarms_of(db: Database, w: World) -> set[str]:
    return (await AlarmStore(db).active_kinds([source_of(w.patient.id)])).get(
        source_of(w.patient.id), set()
    )


async def told(settings: Settings, w: World) -> list[dict[str, Any]]:
    redis = RedisConnection.open(settings.redis_url)
    try:
        box = redis.outbox(settings)
        frames = [orjson.loads(m) for m in await box.since(recipients.dispatchers(w.agency), 0)]
    finally:
        await redis.close()
    return [f for f in frames if f["type"] == "alarm"]


async def test_a_sustained_tachycardia_raises_an_alarm_a_spike_does_not_and_it_clears(
    pipeline: VitalsPipeline, db: Database, settings: Settings
) -> None:
    w = await seed(db)
    start = time.time() - 3600.0
    await pipeline.handle([packed(w, start, [72, 74, 71, 73, 190, 72, 73, 72])])
    assert await alarms_of(db, w) == set()  # one wild reading is no tachycardia

    racing = start + 8 * EVERY_S
    for part in range(3):  # seven and a half minutes at 135, in three batches
        await pipeline.handle([packed(w, racing + part * 150, [135.0] * 5)])
    assert await alarms_of(db, w) == {"tachycardia"}
    [raised] = [f for f in await told(settings, w) if f["status"] == "active_unack"]
    assert (raised["kind"], raised["severity"], raised["patient_id"]) == (
        "tachycardia",
        "major",
        w.patient.id,
    )
    assert raised["source"] == f"patient:{w.patient.id}"
    assert "heart rate above 120 bpm for 5 min" in raised["detail"]

    calm = racing + 15 * EVERY_S
    await pipeline.handle([packed(w, calm, [100.0] * 6)])  # under 110 for a minute and more
    assert await alarms_of(db, w) == set()
    statuses = [f["status"] for f in await told(settings, w)]
    assert statuses == ["active_unack", "cleared_unack"]  # raised once, cleared once
    assert await VitalsStore(db).count_samples([w.patient.id]) == 8 + 15 + 6


async def test_a_sample_kept_already_is_kept_once_and_an_unknown_device_is_refused(
    pipeline: VitalsPipeline, db: Database
) -> None:
    w = await seed(db)
    start = time.time() - 600.0
    batch = packed(w, start, [70, 71, 72])
    await pipeline.handle([batch, batch])  # Kafka delivering it again
    await pipeline.handle([packed(w, start, [70], device="nobody-registered-this")])
    assert await VitalsStore(db).count_samples([w.patient.id]) == 3
    letters = pipeline.rt.dead_letters.metrics.registry
    refused = letters.get_sample_value(
        "careknot_worker_dead_letters_total", {"topic": "telemetry", "reason": "unknown_device"}
    )
    assert refused == 1.0


async def test_a_parked_batch_is_a_letter_a_sample_each_replayable_whole(
    pipeline: VitalsPipeline, db: Database, settings: Settings
) -> None:
    w = await seed(db)
    start = time.time() - 600.0
    value = packed(w, start, [70.0 + i % 7 for i in range(40)])  # some 8 KiB: a letter cuts it
    samples = decode_samples([value], [])
    await pipeline.rt.parker_of(keys.TELEMETRY, samples)("outage", "Postgres away for 5 min")
    letters: list[dict[str, Any]] = []
    async with kafka_reader(settings, keys.DEADLETTER) as reader, asyncio.timeout(30):
        while len(letters) < len(samples):
            for records in (await reader.getmany(timeout_ms=1000)).values():
                for r in records:
                    letter = orjson.loads(r.value)
                    if letter["reason"] == "outage" and w.device.id in letter["payload"]:
                        letters.append(letter)
    assert not any(letter["truncated"] for letter in letters)
    kept = [TelemetrySample.model_validate_json(letter["payload"]) for letter in letters]
    assert kept == samples  # each replays as the sample it was
