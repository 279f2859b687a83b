"""The devices' load against the real Mosquitto: what it publishes at QoS 1 is acknowledged by
the broker one PUBACK a message, and is what a subscriber receives: telemetry readings and
motion events that ingest's contracts accept, spread over the homes, each device's ``seq``
counting up."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict

import aiomqtt
import orjson
import pytest

from kernel.contracts import DeviceEventPayload, TelemetryReading
from kernel.settings import Settings
from simulators.device_load import AGENCY, DeviceShare, is_event, publish

pytestmark = pytest.mark.servers


def test_events_are_spread_evenly_among_the_messages() -> None:
    total, events = 50, 10
    picked = [k for k in range(total) if is_event(k, events, total)]
    assert len(picked) == events
    assert all(b - a == total // events for a, b in itertools.pairwise(picked))
    assert not any(is_event(k, 0, total) for k in range(total))


async def test_the_broker_acknowledges_every_message_the_subscriber_receives(
    settings: Settings,
) -> None:
    homes = [9001, 9002, 9003]
    share = DeviceShare(
        settings.mqtt_host, settings.mqtt_port, homes, 40, 20, 500.0, time.time() + 0.5
    )
    received: dict[str, list[dict[str, object]]] = defaultdict(list)
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as sub:
        await sub.subscribe(f"ck/{AGENCY}/dev/+/+", qos=1)
        published = await asyncio.to_thread(publish, share)
        async with asyncio.timeout(30):
            async for message in sub.messages:
                if message.topic.value.rsplit("/", 2)[1].split("-")[1] in map(str, homes):
                    received[message.topic.value].append(orjson.loads(bytes(message.payload)))
                if sum(map(len, received.values())) == 60:
                    break
    assert (published.telemetry, published.events, published.acknowledged) == (40, 20, 60)
    tel = [r for t, rs in received.items() if t.endswith("/tel") for r in rs]
    evt = [r for t, rs in received.items() if t.endswith("/evt") for r in rs]
    assert (len(tel), len(evt)) == (40, 20)
    assert all(TelemetryReading.model_validate(r).hr for r in tel)
    assert all(DeviceEventPayload.model_validate(r).type == "motion" for r in evt)
    for readings in received.values():
        assert [r["seq"] for r in readings] == list(range(len(readings)))
    assert len({t.rsplit("/", 2)[1] for t in received}) == 6  # a monitor and a sensor a home
