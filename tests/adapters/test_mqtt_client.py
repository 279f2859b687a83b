"""Ingest's MQTT client against the real broker: reading ahead loses, splits or reorders no
message, large or small, however many arrive at once."""

from __future__ import annotations

import asyncio
import secrets

import aiomqtt

from careknot.settings import Settings
from ingest.mqtt_client import ReadAheadClient, ReadAheadSocket

SIZES = [0, 1, 127, 128, 16_383, 16_384, 300_000, 5, 2_097_152, 3]
"""Payloads across the remaining-length encodings' edges, and longer than a read-ahead chunk."""


async def test_a_burst_arrives_whole_and_in_order(stack_settings: Settings) -> None:
    s = stack_settings
    topic = f"ck/ra-{secrets.token_hex(4)}/cg/ra/loc"
    sent = [bytes([n % 251]) * size for n, size in enumerate(SIZES * 30)]
    got: list[bytes] = []
    async with ReadAheadClient(s.mqtt_host, s.mqtt_port) as sub:
        assert isinstance(sub._client.socket(), ReadAheadSocket)
        await sub.subscribe(topic, qos=1)
        async with aiomqtt.Client(s.mqtt_host, s.mqtt_port) as pub:
            for payload in sent:
                await pub.publish(topic, payload, qos=0)
            async with asyncio.timeout(60):
                async for m in sub.messages:
                    assert isinstance(m.payload, bytes)
                    got.append(m.payload)
                    if len(got) == len(sent):
                        break
    assert [len(p) for p in got] == [len(p) for p in sent]
    assert got == sent
