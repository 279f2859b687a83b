"""A batch's device events reach the real Kafka together, each device's in the order it sent
them: a city's motion sensors do not queue a fall behind them one answer at a time, and no
device's events are reordered. Ambient sensors' events go with the home's activity, apart from
the events that act, which the dispatch worker reads."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest

from adapters import kafka
from ingest.device_events import deliver_all
from kernel import keys
from kernel.contracts import DeviceEvent
from kernel.settings import Settings
from tests.support import kafka_reader

pytestmark = pytest.mark.servers

TAG = uuid.uuid4().hex[:8]


def event(device: str, seq: int, kind: str = "motion") -> DeviceEvent:
    now = time.time()
    return DeviceEvent(
        event_id=f"{device}:{seq}:{round(now * 1000)}",
        agency_id=f"del-{TAG}",
        device_id=device,
        type=kind,  # type: ignore[arg-type]
        ts=now,
        seq=seq,
        received_at=now,
    )


async def test_each_devices_events_arrive_in_order_all_of_them_once(settings: Settings) -> None:
    await kafka.ensure_topics(settings, keys.TOPICS)
    devices = [f"del-{TAG}-{n}" for n in range(3)]
    batch = [event(devices[k % 3], k // 3) for k in range(150)]
    batch.insert(75, event(f"del-{TAG}-pendant", 0, "fall"))
    producer = kafka.Producer(settings, acks="all")
    await producer.start()
    try:
        assert await deliver_all(producer, batch) == []
    finally:
        await producer.stop()
    seen: dict[tuple[str, str], list[int]] = {}
    names = (keys.DEVICE_EVENTS, keys.HOME_ACTIVITY)
    async with kafka_reader(settings, *names) as reader, asyncio.timeout(30):
        while sum(map(len, seen.values())) < len(batch):
            for tp, records in (await reader.getmany(timeout_ms=1000)).items():
                for r in records:
                    value = orjson.loads(r.value)
                    if value["device_id"].startswith(f"del-{TAG}-"):
                        seen.setdefault((tp.topic, value["device_id"]), []).append(value["seq"])
    activity, acting = (
        settings.keys.topic(name) for name in (keys.HOME_ACTIVITY, keys.DEVICE_EVENTS)
    )
    assert seen.pop((acting, f"del-{TAG}-pendant")) == [0]
    assert seen == {(activity, d): list(range(50)) for d in devices}
