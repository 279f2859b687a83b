"""Telemetry through the real Mosquitto, ingest and Kafka: a vitals monitor's samples (one a
message, or a batch in one) reach the telemetry topic packed per partition, and what must be
refused (a value no living person has, a sample stamped far ahead, bytes that are no JSON, a
sample saying nothing, a device nobody registered) is dead-lettered with its reason and counted,
the good samples around it going through.

Ingest runs in-process with the telemetry connection only, in a namespace of the module's own,
its share group its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import orjson
import pytest

from adapters.storage.postgres import Database, DeviceRow, PatientRow
from ingest.service import IngestService
from kernel import keys
from kernel.settings import Settings
from kernel.waiting import poll_until
from tests.support import kafka_reader

pytestmark = pytest.mark.servers

TAG = uuid.uuid4().hex[:8]
AGENCY = f"tl-{TAG}"
MONITOR = f"tl-{TAG}-wrist"
STRANGER = f"tl-{TAG}-stranger"
WITHIN_S = 30.0


def topic(device: str = MONITOR) -> str:
    return f"ck/{AGENCY}/dev/{device}/tel"


@pytest.fixture(scope="module")
async def registered(settings: Settings, db: Database) -> Settings:
    await db.upsert_agency(AGENCY, "Telemetry Care")
    await db.upsert_patients([PatientRow(f"tl-{TAG}-patient", AGENCY, "Vera", 53.8, -1.55)])
    await db.upsert_devices([DeviceRow(MONITOR, AGENCY, f"tl-{TAG}-patient", "vitals_monitor")])
    return settings.model_copy(
        update={"mqtt_share_group": f"test-tl-{TAG}", "ingest_metrics_port": 0}
    )


@pytest.fixture
async def ingest(registered: Settings) -> AsyncIterator[tuple[IngestService, asyncio.Task[None]]]:
    async with IngestService(registered) as service:
        task = asyncio.create_task(service.run("telemetry"), name="ingest-under-test")
        await asyncio.wait_for(service.subscribed.wait(), WITHIN_S)
        yield service, task
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def reading(seq: int, **values: Any) -> dict[str, Any]:
    return {"ts": time.time(), "seq": seq, "hr": 72.0, "spo2": 97.0, **values}


async def publish(settings: Settings, messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as monitor:
        for where, payload in messages:
            await monitor.publish(where, payload, qos=1)


async def test_samples_reach_kafka_and_refusals_the_dead_letters(
    registered: Settings, ingest: tuple[IngestService, asyncio.Task[None]]
) -> None:
    service, task = ingest
    now = time.time()
    batch = {"samples": [reading(2), reading(3, temp=36.8), reading(4, bp_sys=128, bp_dia=84)]}
    refused = {
        "out_of_range": orjson.dumps(reading(10, hr=300.0)),
        "from_future": orjson.dumps(reading(11) | {"ts": now + 3600}),
        "malformed_json": b'{"ts": 1, "hr": ',
        "no_readings": orjson.dumps({"ts": now, "seq": 12}),
        "invalid_fields": orjson.dumps(reading(13, spo2="high")),
    }
    await publish(
        registered,
        [(topic(), orjson.dumps(reading(1)))]
        + [(topic(), payload) for payload in refused.values()]
        + [(topic(STRANGER), orjson.dumps(reading(14))), (topic(), orjson.dumps(batch))],
    )
    samples: dict[int, dict[str, Any]] = {}
    letters: dict[str, dict[str, Any]] = {}
    async with kafka_reader(registered, keys.TELEMETRY, keys.DEADLETTER) as reader:

        async def arrived() -> bool | None:
            if task.done():
                pytest.fail(f"ingest ended: {task.exception()!r}")
            for tp, records in (await reader.getmany(timeout_ms=200)).items():
                for record in records:
                    value = orjson.loads(record.value or b"null")
                    if tp.topic == registered.keys.topic(keys.TELEMETRY):
                        assert isinstance(value, list)  # packed, as fixes are
                        samples.update((s["seq"], s) for s in value if s["device_id"] == MONITOR)
                    elif value["source"].startswith(f"ck/{AGENCY}/"):
                        letters[value["reason"]] = value
            return True if len(samples) == 4 and len(letters) == len(refused) + 1 else None

        await poll_until(arrived, WITHIN_S, "four samples and six dead letters")

    assert sorted(samples) == [1, 2, 3, 4]
    assert samples[3]["temp"] == 36.8
    assert (samples[4]["bp_sys"], samples[4]["bp_dia"]) == (128.0, 84.0)
    assert samples[1]["agency_id"] == AGENCY
    assert set(letters) == {*refused, "unknown_device"}
    assert "hr 300 bpm" in letters["out_of_range"]["detail"]
    assert letters["unknown_device"]["source"] == topic(STRANGER)
    registry = service.metrics.registry
    assert registry.get_sample_value("careknot_ingest_telemetry_samples_accepted_total") == 4
    for reason in letters:
        labels = {"reason": reason}
        assert registry.get_sample_value("careknot_ingest_rejected_total", labels) == 1
