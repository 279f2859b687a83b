"""A device event ingest cannot pass on costs that event alone: through the real Mosquitto,
Kafka and Postgres, a fall nested too deep to write out again, or one whose handling fails
unexpectedly, is dead-lettered with its reason and counted, and the well-formed fall published
after it still reaches the device-events topic, ingest running on.

Ingest runs in-process with the emergencies' connection only, in a namespace of the module's
own, its share group its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from adapters.storage.postgres import Database, DeviceRow, PatientRow
from ingest.parse import MAX_DEPTH, parse_device_event
from ingest.service import IngestService
from kernel import keys
from kernel.settings import Settings
from kernel.waiting import poll_until
from tests.support import kafka_reader

pytestmark = pytest.mark.servers

TAG = uuid.uuid4().hex[:8]
AGENCY = f"bd-{TAG}"
PENDANT = f"bd-{TAG}-pendant"
TOPIC = f"ck/{AGENCY}/dev/{PENDANT}/evt"
WITHIN_S = 30.0


@pytest.fixture(scope="module")
async def registered(settings: Settings, db: Database) -> Settings:
    """The module's namespace with a patient's pendant registered, on a share group its own."""
    await db.upsert_agency(AGENCY, "Bad Payload Care")
    await db.upsert_patients([PatientRow(f"bd-{TAG}-patient", AGENCY, "Pat", 53.8, -1.55)])
    await db.upsert_devices([DeviceRow(PENDANT, AGENCY, f"bd-{TAG}-patient", "pendant")])
    return settings.model_copy(
        update={"mqtt_share_group": f"test-bd-{TAG}", "ingest_metrics_port": 0}
    )


@pytest.fixture
async def ingest(registered: Settings) -> AsyncIterator[tuple[IngestService, asyncio.Task[None]]]:
    """Ingest of device events, as ``careknot up`` runs it, once subscribed."""
    async with IngestService(registered) as service:
        task = asyncio.create_task(service.run("emergencies"), name="ingest-under-test")
        await asyncio.wait_for(service.subscribed.wait(), WITHIN_S)
        yield service, task
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class Out:
    """The pendant's device events and dead letters that came out of Kafka."""

    settings: Settings
    reader: AIOKafkaConsumer
    falls: set[int] = field(default_factory=set)
    """The falls' ``seq``."""
    letters: list[dict[str, Any]] = field(default_factory=list)

    async def read(self) -> None:
        for tp, records in (await self.reader.getmany(timeout_ms=200)).items():
            values = [orjson.loads(r.value) for r in records if r.value]
            if tp.topic == self.settings.keys.topic(keys.DEVICE_EVENTS):
                self.falls |= {v["seq"] for v in values if v["device_id"] == PENDANT}
            else:
                self.letters += [v for v in values if v["source"] == TOPIC]


@contextlib.asynccontextmanager
async def reading(settings: Settings) -> AsyncIterator[Out]:
    async with kafka_reader(settings, keys.DEVICE_EVENTS, keys.DEADLETTER) as reader:
        yield Out(settings, reader)


def fall(seq: int, data: dict[str, Any] | None = None) -> bytes:
    """A fall as the pendant publishes it (json, which writes any depth)."""
    return json.dumps({"type": "fall", "ts": time.time(), "seq": seq, "data": data or {}}).encode()


def nested(levels: int) -> Any:
    """Objects and arrays in turn, ``levels`` deep."""
    value: Any = {}
    for level in range(levels - 1):
        value = {"a": value} if level % 2 else [value]
    return value


async def publish(settings: Settings, payloads: list[bytes]) -> None:
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as pendant:
        for payload in payloads:
            await pendant.publish(TOPIC, payload, qos=1)


async def through(
    settings: Settings, task: asyncio.Task[None], good: int, reason: str
) -> list[dict[str, Any]]:
    """Wait until the fall ``good`` and a dead letter for ``reason`` are out of Kafka (failing
    at once should ingest have ended); the dead letters for ``reason``."""
    async with reading(settings) as out:

        async def arrived() -> list[dict[str, Any]] | None:
            if task.done():
                pytest.fail(f"ingest ended: {task.exception()!r}")
            await out.read()
            letters = [letter for letter in out.letters if letter["reason"] == reason]
            return letters if good in out.falls and letters else None

        return await poll_until(arrived, WITHIN_S, f"fall {good} and a {reason} dead letter")


def rejected(service: IngestService, reason: str) -> float | None:
    samples = service.metrics.registry
    return samples.get_sample_value("careknot_ingest_rejected_total", {"reason": reason})


async def test_a_fall_nested_too_deep_is_dead_lettered_and_the_next_fall_goes_through(
    registered: Settings, ingest: tuple[IngestService, asyncio.Task[None]]
) -> None:
    service, task = ingest
    deep = fall(1, {"a": nested(350)})
    assert len(deep) < registered.max_payload_bytes  # under the size cap
    await publish(registered, [deep, fall(2)])

    [letter] = await through(registered, task, 2, "too_deep")
    assert str(MAX_DEPTH) in letter["detail"]
    assert letter["payload"] == deep[:1024].decode()
    assert rejected(service, "too_deep") == 1.0
    assert not task.done()


async def test_a_fall_whose_handling_fails_is_dead_lettered_and_the_rest_of_its_batch_goes_on(
    registered: Settings,
    ingest: tuple[IngestService, asyncio.Task[None]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fault of ingest's own while one message is handled (here a parser made to raise on
    the fall of ``seq`` 13) costs that message only."""
    service, task = ingest

    def faulty(*args: Any) -> Any:
        if b'"seq": 13' in args[2]:
            raise ZeroDivisionError("a fault of ingest's own")
        return parse_device_event(*args)

    monkeypatch.setattr("ingest.service.parse_device_event", faulty)
    await publish(registered, [fall(13), fall(14)])

    [letter] = await through(registered, task, 14, "internal_error")
    assert letter["detail"] == "ZeroDivisionError: a fault of ingest's own"
    assert rejected(service, "internal_error") == 1.0
    logged = [r for r in caplog.records if r.exc_info and r.name == "ingest.service"]
    assert len(logged) == 1
    assert not task.done()
