"""Device events through ingest to the real Kafka: a batch's events that act reach the
device-events topic together, each device's in the order it sent them (a fall does not wait for
one answer per event before it); an ambient sensor's events are packed onto the home-activity
topic, which the dispatch worker never reads, and a fall in the same batch still goes to it."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import pytest

from adapters import kafka
from adapters.storage.postgres import Database, DeviceRow, PatientRow
from ingest.device_events import deliver_all
from ingest.service import IngestService
from kernel import keys
from kernel.contracts import DeviceEvent, DeviceEventType
from kernel.errors import StorageError
from kernel.settings import Settings
from tests.support import kafka_reader

pytestmark = pytest.mark.servers

TAG = uuid.uuid4().hex[:8]
AGENCY = f"del-{TAG}"


def event(device: str, seq: int, kind: DeviceEventType = "dose_taken") -> DeviceEvent:
    now = time.time()
    return DeviceEvent(
        event_id=f"{device}:{seq}:{round(now * 1000)}",
        agency_id=AGENCY,
        device_id=device,
        type=kind,
        ts=now,
        seq=seq,
        received_at=now,
    )


async def read(
    settings: Settings, names: tuple[str, ...], devices: set[str], wanted: int
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The records of ``devices`` on the logical topics ``names``, by (logical topic, device),
    once ``wanted`` have come (packed messages read as their records)."""
    topics = {settings.keys.topic(name): name for name in names}
    seen: dict[tuple[str, str], list[dict[str, Any]]] = {}
    async with kafka_reader(settings, *names) as reader, asyncio.timeout(30):
        while sum(map(len, seen.values())) < wanted:
            for tp, records in (await reader.getmany(timeout_ms=1000)).items():
                for r in records:
                    value = orjson.loads(r.value)
                    for item in value if isinstance(value, list) else [value]:
                        if item["device_id"] in devices:
                            key = (topics[tp.topic], item["device_id"])
                            seen.setdefault(key, []).append(item)
    return seen


async def test_each_devices_events_arrive_in_order_all_of_them_once(settings: Settings) -> None:
    await kafka.ensure_topics(settings, keys.TOPICS)
    dispensers = [f"{AGENCY}-dd{n}" for n in range(3)]
    batch = [event(dispensers[k % 3], k // 3) for k in range(150)]
    batch.insert(75, event(f"{AGENCY}-pendant", 0, "fall"))
    producer = kafka.Producer(settings, acks="all")
    await producer.start()
    try:
        assert await deliver_all(producer, batch) == []
    finally:
        await producer.stop()
    seen = await read(settings, (keys.DEVICE_EVENTS,), {e.device_id for e in batch}, len(batch))
    seqs = {device: [v["seq"] for v in values] for (_t, device), values in seen.items()}
    assert seqs.pop(f"{AGENCY}-pendant") == [0]
    assert seqs == {d: list(range(50)) for d in dispensers}


async def test_ambient_events_are_packed_apart_and_a_fall_among_them_acts(
    settings: Settings, db: Database
) -> None:
    await db.upsert_agency(AGENCY, "Delivery Care")
    await db.upsert_patients([PatientRow(f"{AGENCY}-p", AGENCY, "Pat", 53.8, -1.55)])
    sensor, door, pendant = f"{AGENCY}-pir", f"{AGENCY}-door", f"{AGENCY}-sos"
    await db.upsert_devices(
        [
            DeviceRow(sensor, AGENCY, f"{AGENCY}-p", "motion_sensor"),
            DeviceRow(door, AGENCY, f"{AGENCY}-p", "door_sensor"),
            DeviceRow(pendant, AGENCY, f"{AGENCY}-p", "pendant"),
        ]
    )
    now = time.time()

    def published(device: str, kind: str, seq: int) -> tuple[str, bytes]:
        payload = {"type": kind, "ts": now + seq / 1000, "seq": seq, "data": {}}
        return f"ck/{AGENCY}/dev/{device}/evt", orjson.dumps(payload)

    messages = [published(sensor, "motion", n) for n in range(40)]
    messages.insert(20, published(pendant, "sos", 0))
    messages += [published(door, "door_open", 0), published(door, "door_closed", 1)]
    own = settings.model_copy(update={"ingest_metrics_port": 0})
    async with IngestService(own) as service:
        await service.handle_batch(messages)
        await service.flush()
    names = (keys.DEVICE_EVENTS, keys.HOME_ACTIVITY)
    seen = await read(own, names, {sensor, door, pendant}, len(messages))
    assert [v["type"] for v in seen.pop((keys.DEVICE_EVENTS, pendant))] == ["sos"]
    assert [v["seq"] for v in seen.pop((keys.HOME_ACTIVITY, sensor))] == list(range(40))
    assert [v["type"] for v in seen.pop((keys.HOME_ACTIVITY, door))] == ["door_open", "door_closed"]
    assert seen == {}


class RefusingPartition:
    """Stands in for a Kafka that will not take one device's events (one partition's leader
    gone): no real broker refuses a single key on demand."""

    def __init__(self, refused_device: str) -> None:
        self.refused_device = refused_device
        self.sent: list[tuple[str, int]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: str | None = None) -> None:
        item = orjson.loads(value)
        if key == self.refused_device and item["seq"] >= 1:
            raise StorageError("not the leader for that partition")
        self.sent.append((item["device_id"], item["seq"]))


async def test_a_device_whose_event_is_given_up_keeps_its_later_events_behind_it() -> None:
    stuck, fine = f"{AGENCY}-stuck", f"{AGENCY}-fine"
    batch = [event(d, seq) for seq in range(3) for d in (stuck, fine)]
    kafka_down_for_one = RefusingPartition(stuck)
    failed = await deliver_all(kafka_down_for_one, batch, deadline_s=0)  # type: ignore[arg-type]
    assert [(e.device_id, e.seq) for e, _exc in failed] == [(stuck, 1), (stuck, 2)]
    assert all(isinstance(exc, StorageError) for _e, exc in failed)
    sent = kafka_down_for_one.sent
    assert [s for d, s in sent if d == stuck] == [0]
    assert [s for d, s in sent if d == fine] == [0, 1, 2]
