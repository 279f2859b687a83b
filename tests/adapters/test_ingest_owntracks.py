"""Ingest of the OwnTracks app's messages through the real Mosquitto to Kafka, in-process.

The OwnTracks payloads are published exactly as the app publishes them; the ingest service
runs as an asyncio task on the session's servers, with a share group and a metrics port of
its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from adapters.storage.postgres import CaregiverRow, Database
from ingest.owntracks import OwnTracksDevice
from ingest.registry import register_owntracks_device
from ingest.service import IngestService
from kernel.settings import Settings
from streams.fix_flow import decode_fixes
from tests.support import free_port, scrape, wait_for

pytestmark = pytest.mark.servers

TAG = uuid.uuid4().hex[:8]
AGENCY = f"ot-{TAG}"
CAREGIVER = f"cg-ot-{TAG}"
JANE = OwnTracksDevice(f"jane{TAG}", "phone")
WITHIN_S = 20.0


def topic_of(device: OwnTracksDevice) -> str:
    return f"owntracks/{device.user}/{device.device}"


def location(tst: int) -> dict[str, Any]:
    """A location as the OwnTracks app publishes it."""
    return {
        "_type": "location",
        "acc": 9,
        "alt": 71,
        "batt": 64,
        "bs": 1,
        "conn": "m",
        "created_at": tst,
        "lat": 53.80075,
        "lon": -1.54912,
        "m": 1,
        "t": "u",
        "tid": "ja",
        "tst": tst,
        "vac": 3,
        "vel": 22,
    }


@dataclass
class Seen:
    """What came out on the fixes, presence and dead-letter topics."""

    fixes: list[dict[str, Any]] = field(default_factory=list)
    presence: list[dict[str, Any]] = field(default_factory=list)
    letters: list[dict[str, Any]] = field(default_factory=list)


def stranger() -> OwnTracksDevice:
    """A phone nobody registered."""
    return OwnTracksDevice(f"stranger{uuid.uuid4().hex[:8]}", "phone")


@pytest.fixture(scope="module")
async def settings(migrated: Settings) -> AsyncIterator[Settings]:
    own = migrated.model_copy(update={"mqtt_share_group": f"test-ot-{TAG}"})
    async with Database(own) as db:
        await db.upsert_agency(AGENCY, "OwnTracks Care")
        await db.upsert_caregivers([CaregiverRow(CAREGIVER, AGENCY, "Jane Carer")])
        await register_owntracks_device(db, JANE, CAREGIVER)
    yield own


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[IngestService]:
    """Ingest running in this process, with fresh counters served on a port of its own."""
    own = settings.model_copy(update={"ingest_metrics_port": free_port()})
    async with IngestService(own) as service:
        task = asyncio.create_task(service.run(), name="ingest-under-test")
        await asyncio.wait_for(service.subscribed.wait(), WITHIN_S)
        yield service
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def publish(settings: Settings, messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


async def collect_until(
    settings: Settings, done: Callable[[Seen], bool], within: float = WITHIN_S
) -> Seen:
    consumer = AIOKafkaConsumer(
        settings.keys.topic("fixes"),
        settings.keys.topic("presence"),
        settings.keys.topic("deadletter"),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    seen = Seen()
    await consumer.start()
    try:
        async with asyncio.timeout(within):
            while not done(seen):
                for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                    values = [r.value for r in records if r.value]
                    if tp.topic == settings.keys.topic("fixes"):
                        seen.fixes += [f.model_dump() for f in decode_fixes(values)]
                    elif tp.topic == settings.keys.topic("presence"):
                        seen.presence += [orjson.loads(v) for v in values]
                    else:
                        seen.letters += [orjson.loads(v) for v in values]
    finally:
        await consumer.stop()
    return seen


async def test_the_apps_messages_reach_kafka_as_the_mapped_caregivers_fixes(
    ingest: IngestService, settings: Settings
) -> None:
    tst, nobody = int(time.time()) - 2, stranger()
    await publish(
        settings,
        [
            (topic_of(JANE), b"{not json"),
            (topic_of(JANE), orjson.dumps({"_type": "lwt", "tst": tst - 600})),
            (topic_of(JANE), orjson.dumps({"_type": "card", "name": "Jane", "tid": "ja"})),
            (topic_of(nobody), orjson.dumps(location(tst))),
            (topic_of(JANE), orjson.dumps(location(tst))),
        ],
    )

    def arrived(seen: Seen) -> bool:
        return (
            any(f["caregiver_id"] == CAREGIVER and f["ts"] == tst for f in seen.fixes)
            and {topic_of(nobody), topic_of(JANE)} <= {letter["source"] for letter in seen.letters}
            and any(p["caregiver_id"] == CAREGIVER for p in seen.presence)
        )

    seen = await collect_until(settings, arrived)  # dead letters come on a topic of their own
    [fix] = [f for f in seen.fixes if f["caregiver_id"] == CAREGIVER and f["ts"] == tst]
    assert fix["agency_id"] == AGENCY
    assert (fix["lat"], fix["lon"], fix["ts"], fix["acc"], fix["vel"], fix["batt"]) == (
        53.80075,
        -1.54912,
        tst,
        9,
        22,
        64,
    )
    reasons = {
        letter["source"]: letter["reason"]
        for letter in seen.letters
        if letter["source"] in (topic_of(nobody), topic_of(JANE))
    }
    assert reasons == {
        topic_of(nobody): "unknown_owntracks_device",
        topic_of(JANE): "malformed_json",
    }
    [gone] = [p for p in seen.presence if p["caregiver_id"] == CAREGIVER]
    assert (gone["agency_id"], gone["online"], gone["source"]) == (AGENCY, False, topic_of(JANE))


async def test_the_counts_are_served_in_prometheus_text_format(
    ingest: IngestService, settings: Settings
) -> None:
    port = ingest.metrics_port
    assert port is not None
    tst = int(time.time()) - 1
    await publish(
        settings,
        [
            (topic_of(JANE), orjson.dumps(location(tst))),
            (topic_of(JANE), orjson.dumps({"_type": "lwt", "tst": tst - 600})),
            (topic_of(JANE), orjson.dumps({"_type": "lwt", "tst": tst - 60})),
            (topic_of(JANE), orjson.dumps({"_type": "transition", "event": "enter", "tst": tst})),
            (topic_of(stranger()), orjson.dumps(location(tst))),
        ],
    )
    wanted = (
        'careknot_ingest_fixes_accepted_total{source="owntracks"} 1.0',
        'careknot_ingest_rejected_total{reason="unknown_owntracks_device"} 1.0',
        'careknot_ingest_presence_total{state="offline"} 2.0',
        'careknot_ingest_owntracks_ignored_total{type="transition"} 1.0',
        "careknot_ingest_produce_failures_total 0.0",
    )

    async def all_counted() -> str | None:
        text = await scrape(port)
        return text if all(line in text for line in wanted) else None

    text = await wait_for(all_counted, WITHIN_S, "the metrics of the published messages")
    assert text.startswith("HTTP/1.1 200 OK\r\n")
    assert "Content-Type: text/plain; version=0.0.4" in text


async def test_an_encrypted_or_unknown_message_is_dead_lettered_with_its_reason_and_counted(
    ingest: IngestService, settings: Settings
) -> None:
    """A phone whose app encrypts is seen, not silently lost; a type that is no fix is not
    refused."""
    encrypting, unknown, moving = stranger(), stranger(), stranger()
    sealed = {"_type": "encrypted", "data": "7ctHvV0hB4rJ1Ys0YpQ1bA=="}
    await publish(
        settings,
        [
            (topic_of(moving), orjson.dumps({"_type": "transition", "event": "enter", "tst": 1})),
            (topic_of(encrypting), orjson.dumps(sealed)),
            (topic_of(unknown), orjson.dumps({"_type": "teleport", "lat": 53.8, "lon": -1.5})),
        ],
    )
    sources = {topic_of(d) for d in (encrypting, unknown, moving)}

    def refused(seen: Seen) -> bool:
        return len({letter["source"] for letter in seen.letters} & sources) == 2

    seen = await collect_until(settings, refused)
    reasons = {letter["source"]: letter for letter in seen.letters if letter["source"] in sources}
    assert reasons.keys() == {topic_of(encrypting), topic_of(unknown)}
    assert reasons[topic_of(encrypting)]["reason"] == "encrypted"
    assert orjson.loads(reasons[topic_of(encrypting)]["payload"]) == sealed
    assert reasons[topic_of(unknown)]["reason"] == "unknown_type"
    port = ingest.metrics_port
    assert port is not None
    lines = (await scrape(port)).splitlines()
    assert 'careknot_ingest_rejected_total{reason="encrypted"} 1.0' in lines
    assert 'careknot_ingest_rejected_total{reason="unknown_type"} 1.0' in lines
    transitions = 'careknot_ingest_owntracks_ignored_total{type="transition"}'
    assert any(line.startswith(transitions) for line in lines)  # counted, not refused
