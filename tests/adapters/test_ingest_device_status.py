"""A home device's status through the real Mosquitto, ingest and Kafka: its birth and its
heartbeats reach the device-status topic; when the device dies (its process killed, no
DISCONNECT sent) Mosquitto publishes its last will, which reaches it too. What a device may
not say is dead-lettered with its reason and counted, and the fall sent after it still goes
through: a fall detector's ``dose_taken``, a status that is no status, a heartbeat out of
range, anything from a device whose kind the system does not know.

Ingest runs in-process with the device events' connection, in a namespace of the module's
own.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
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
AGENCY = f"ds-{TAG}"
DETECTOR = f"ds-{TAG}-fd"
ODD = f"ds-{TAG}-odd"
"""A device whose kind was written into the registry by hand, not one the system knows."""
WITHIN_S = 30.0


def status_topic(device: str) -> str:
    return f"ck/{AGENCY}/dev/{device}/status"


def event_topic(device: str) -> str:
    return f"ck/{AGENCY}/dev/{device}/evt"


DEVICE = """
import asyncio, sys, time, aiomqtt, orjson
host, port, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
async def main():
    will = aiomqtt.Will(topic, b"offline", qos=1, retain=True)
    async with aiomqtt.Client(host, port, identifier=sys.argv[4], will=will, keepalive=5) as c:
        await c.publish(topic, b"online", qos=1, retain=True)
        beat = {"ts": time.time(), "battery": 64, "rssi": -70, "firmware": "3.2", "interval": 5}
        await c.publish(topic, orjson.dumps(beat), qos=1)
        print("ready", flush=True)
        await asyncio.sleep(3600)
asyncio.run(main())
"""
"""A fall detector as a process of its own: its last will set, its birth and a heartbeat
published; killed, it sends no DISCONNECT, so the broker publishes its will."""


@pytest.fixture(scope="module")
async def registered(settings: Settings, db: Database) -> AsyncIterator[Settings]:
    """The module's devices; once done, the detector's retained will forgotten by the broker
    (what it queues meanwhile for ingest's session goes with the session, ended after)."""
    await db.upsert_agency(AGENCY, "Device Status Care")
    await db.upsert_patients([PatientRow(f"ds-{TAG}-p", AGENCY, "Nell", 53.8, -1.55)])
    await db.upsert_devices(
        [
            DeviceRow(DETECTOR, AGENCY, f"ds-{TAG}-p", "fall_detector"),
            DeviceRow(ODD, AGENCY, f"ds-{TAG}-p", "motion_sensor"),
        ]
    )
    await db.pool.execute("UPDATE devices SET kind = 'smart_kettle' WHERE id = $1", ODD)
    yield settings.model_copy(update={"ingest_metrics_port": 0})
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as broker:
        await broker.publish(status_topic(DETECTOR), b"", qos=1, retain=True)


@pytest.fixture
async def ingest(registered: Settings) -> AsyncIterator[tuple[IngestService, asyncio.Task[None]]]:
    async with IngestService(registered) as service:
        task = asyncio.create_task(service.run("emergencies"), name="ingest-under-test")
        await asyncio.wait_for(service.subscribed.wait(), WITHIN_S)
        yield service, task
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def read_until(
    settings: Settings, task: asyncio.Task[None], enough: Any, what: str
) -> dict[str, list[dict[str, Any]]]:
    """Values of device-status, device-events and dead letters of this module's devices,
    read until ``enough(values)`` (failing at once should ingest have ended)."""
    seen: dict[str, list[dict[str, Any]]] = {"status": [], "events": [], "letters": []}
    names = {keys.DEVICE_STATUS: "status", keys.DEVICE_EVENTS: "events", keys.DEADLETTER: "letters"}
    by_topic = {settings.keys.topic(n): label for n, label in names.items()}
    async with kafka_reader(settings, *names) as reader:

        async def arrived() -> bool | None:
            if task.done():
                pytest.fail(f"ingest ended: {task.exception()!r}")
            for tp, records in (await reader.getmany(timeout_ms=200)).items():
                values = [orjson.loads(r.value) for r in records if r.value]
                seen[by_topic[tp.topic]] += [v for v in values if AGENCY in str(v)]
            return True if enough(seen) else None

        await poll_until(arrived, WITHIN_S, what)
    return seen


def counted(service: IngestService, name: str, labels: dict[str, str]) -> float | None:
    return service.metrics.registry.get_sample_value(name, labels)


async def test_a_device_s_birth_heartbeat_and_last_will_reach_kafka(
    registered: Settings, ingest: tuple[IngestService, asyncio.Task[None]]
) -> None:
    service, task = ingest
    s = registered
    device = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        DEVICE,
        s.mqtt_host,
        str(s.mqtt_port),
        status_topic(DETECTOR),
        f"ds-{TAG}-device",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert device.stdout is not None
        assert (await asyncio.wait_for(device.stdout.readline(), WITHIN_S)).strip() == b"ready"

        def alive(seen: dict[str, list[dict[str, Any]]]) -> bool:
            return {"online", "heartbeat"} <= {v["status"] for v in seen["status"]}

        seen = await read_until(s, task, alive, "the detector's birth and heartbeat")
    finally:
        device.kill()  # no DISCONNECT: the broker publishes its will
        await device.wait()
    [beat] = [v for v in seen["status"] if v["status"] == "heartbeat"]
    assert (beat["device_id"], beat["agency_id"], beat["battery"], beat["interval_s"]) == (
        DETECTOR,
        AGENCY,
        64,
        5.0,
    )
    assert (beat["rssi"], beat["firmware"]) == (-70.0, "3.2")

    def dead(seen: dict[str, list[dict[str, Any]]]) -> bool:
        return any(v["status"] == "offline" for v in seen["status"])

    seen = await read_until(s, task, dead, "the detector's last will")
    [will] = [v for v in seen["status"] if v["status"] == "offline"]
    assert will["device_id"] == DETECTOR
    assert counted(service, "careknot_ingest_device_status_total", {"status": "offline"}) == 1.0


async def test_what_a_device_may_not_say_is_dead_lettered_and_the_fall_after_it_goes_through(
    registered: Settings, ingest: tuple[IngestService, asyncio.Task[None]]
) -> None:
    service, task = ingest
    now = time.time()
    sent = [
        (event_topic(DETECTOR), {"type": "dose_taken", "ts": now, "seq": 1}),
        (status_topic(DETECTOR), b"asleep"),
        (status_topic(DETECTOR), {"ts": now, "battery": 140}),
        (status_topic(ODD), {"ts": now, "battery": 50}),
        (event_topic(ODD), {"type": "motion", "ts": now, "seq": 1}),
        (event_topic(DETECTOR), {"type": "fall", "ts": now, "seq": 2}),
    ]
    async with aiomqtt.Client(registered.mqtt_host, registered.mqtt_port) as devices:
        for topic, body in sent:
            payload = body if isinstance(body, bytes) else orjson.dumps(body)
            await devices.publish(topic, payload, qos=1)

    def through(seen: dict[str, list[dict[str, Any]]]) -> bool:
        return bool(seen["events"]) and len(seen["letters"]) >= 5

    seen = await read_until(registered, task, through, "the fall after five refusals")
    assert [(e["device_id"], e["type"]) for e in seen["events"]] == [(DETECTOR, "fall")]
    letters = sorted((letter["source"], letter["reason"]) for letter in seen["letters"])
    assert letters == sorted(
        [
            (event_topic(DETECTOR), "event_not_for_kind"),
            (status_topic(DETECTOR), "bad_status"),
            (status_topic(DETECTOR), "invalid_fields"),
            (status_topic(ODD), "unknown_device_kind"),
            (event_topic(ODD), "unknown_device_kind"),
        ]
    )  # dead letters are keyed by reason: in order within a reason only
    reasons = ("event_not_for_kind", "bad_status", "invalid_fields", "unknown_device_kind")
    rejected = [counted(service, "careknot_ingest_rejected_total", {"reason": r}) for r in reasons]
    assert rejected == [1.0, 1.0, 1.0, 2.0]
    assert not [v for v in seen["status"] if v["device_id"] == ODD]
