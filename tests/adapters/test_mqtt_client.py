"""Ingest's MQTT client against the real broker: messages taken from the wire in batches lose,
split or reorder nothing, large or small, QoS 0 or 1, however many arrive at once; and QoS 1
messages are acknowledged (the broker holds back more than a few unacknowledged ones).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator
from contextlib import aclosing

import aiomqtt

from adapters.mqtt.client import CHUNK_BYTES, BatchingClient, ReadAheadSocket, end_session
from adapters.mqtt.frames import Publish
from adapters.mqtt.subscription import Subscription
from kernel.settings import Settings

SIZES = [0, 1, 127, 128, 16_383, 16_384, 300_000, 5, 2_097_152, 3]
"""Payloads across the remaining-length encodings' edges, and longer than a read-ahead chunk."""


async def test_a_burst_arrives_whole_and_in_order(stack_settings: Settings) -> None:
    s = stack_settings
    topic = f"ck/ra-{secrets.token_hex(4)}/cg/ra/loc"
    sent = [(bytes([n % 251]) * size, n % 2) for n, size in enumerate(SIZES * 30)]
    got: list[tuple[bytes, int]] = []
    async with BatchingClient(s.mqtt_host, s.mqtt_port) as sub:
        assert isinstance(sub._client.socket(), ReadAheadSocket)
        await sub.subscribe(topic, qos=1)
        async with aiomqtt.Client(s.mqtt_host, s.mqtt_port) as pub:
            for payload, qos in sent:
                await pub.publish(topic, payload, qos=qos)
            async with asyncio.timeout(60):
                async for batch in sub.batches(100):
                    assert {m.topic for m in batch} == {topic}
                    got += [(m.payload, m.qos) for m in batch]
                    sub.ack(batch)
                    if len(got) == len(sent):
                        break
    for qos in (0, 1):  # MQTT keeps the order of a topic's messages of one QoS
        mine = [p for p, q in got if q == qos]
        assert [len(p) for p in mine] == [len(p) for p, q in sent if q == qos]
        assert mine == [p for p, q in sent if q == qos]


async def test_many_qos1_messages_flow_only_when_acknowledged(stack_settings: Settings) -> None:
    s = stack_settings
    topic = f"ck/ra-{secrets.token_hex(4)}/cg/ack/loc"
    async with BatchingClient(s.mqtt_host, s.mqtt_port) as sub:
        await sub.subscribe(topic, qos=1)
        async with aiomqtt.Client(s.mqtt_host, s.mqtt_port) as pub:
            for n in range(500):
                await pub.publish(topic, str(n).encode(), qos=1)
            got: list[bytes] = []
            async with asyncio.timeout(60):
                async for batch in sub.batches(1000):
                    got += [m.payload for m in batch]
                    sub.ack(batch)
                    if len(got) == 500:
                        break
    assert got == [str(n).encode() for n in range(500)]


async def test_the_connection_lives_on_under_a_flood_longer_than_its_keepalive(
    stack_settings: Settings,
) -> None:
    """paho sees none of the publishes; its keep-alive must still hold the connection (it pings
    and the broker's answer reaches it) across several keep-alive periods."""
    s = stack_settings
    topic = f"ck/ra-{secrets.token_hex(4)}/cg/ka/loc"
    keepalive, rounds = 1, 40
    async with BatchingClient(s.mqtt_host, s.mqtt_port, keepalive=keepalive) as sub:
        await sub.subscribe(topic, qos=1)
        got = 0
        async with aiomqtt.Client(s.mqtt_host, s.mqtt_port) as pub:
            batches = sub.batches(10_000)
            for n in range(rounds):  # ~4 keep-alive periods of traffic
                for k in range(50):
                    await pub.publish(topic, f"{n}:{k}".encode(), qos=0)
                async with asyncio.timeout(30):
                    while got < (n + 1) * 50:
                        got += len(await anext(batches))
                await asyncio.sleep(keepalive / 10)  # paced traffic, not a synchronisation
            await batches.aclose()
        assert got == rounds * 50
        await sub.publish(topic, b"still here", qos=1)  # the connection is up


async def test_a_full_inbox_stops_the_reading_and_nothing_is_lost(stack_settings: Settings) -> None:
    """Publishes come faster than they are taken: the inbox never holds more than its capacity
    and one read's worth, the client stops reading each time it is full and reads on once it
    is down to half, and every message arrives, in order."""
    s = stack_settings
    topic = f"ck/ra-{secrets.token_hex(4)}/cg/full/loc"
    capacity, sent = 50, [f"{n:06d}".encode() * 170 for n in range(4_000)]  # ~1 KiB each
    one_read = CHUNK_BYTES // len(sent[0])
    async with BatchingClient(s.mqtt_host, s.mqtt_port, inbox_capacity=capacity) as sub:
        await sub.subscribe(topic, qos=0)
        async with aiomqtt.Client(s.mqtt_host, s.mqtt_port) as pub:
            for payload in sent:
                await pub.publish(topic, payload, qos=0)
            await pub.publish(topic, b"", qos=1)  # the broker has every one of them
        got: list[bytes] = []
        held, paused = [len(sub.inbox)], [False]
        async with asyncio.timeout(60):
            async for batch in sub.batches(capacity // 5):
                got += [m.payload for m in batch]
                held.append(len(sub.inbox))
                paused.append(sub.inbox.paused)
                if len(got) == len(sent) + 1:
                    break
    assert got[:-1] == sent
    assert max(held) <= capacity + one_read
    assert sum(not was and now for was, now in itertools.pairwise(paused)) > 1  # paused again


async def test_a_connection_given_up_has_what_it_did_not_acknowledge_sent_again(
    stack_settings: Settings,
) -> None:
    """A persistent session: the connection given up before its QoS 1 messages were
    acknowledged, the broker sends them again to the next one."""
    s = stack_settings
    topic, session = f"ck/ra-{secrets.token_hex(4)}/cg/renew/loc", f"ra-{secrets.token_hex(4)}"
    sent = [b"one", b"two", b"three"]
    try:
        async with Subscription(
            s.mqtt_host, s.mqtt_port, [topic], name="t", session=session
        ) as sub:
            async with aiomqtt.Client(s.mqtt_host, s.mqtt_port) as pub:
                for payload in sent:
                    await pub.publish(topic, payload, qos=1)
            async with asyncio.timeout(30), aclosing(sub.batches(10)) as batches:
                assert await taken(batches, len(sent)) == sent
                sub.renew("a test giving it up")
                again = await taken(batches, len(sent), sub)
            assert again == sent
    finally:
        await end_session(s.mqtt_host, s.mqtt_port, session)


async def taken(
    batches: AsyncIterator[list[Publish]], count: int, acknowledging: Subscription | None = None
) -> list[bytes]:
    """The payloads of the next ``count`` messages, acknowledged as taken if asked."""
    got: list[bytes] = []
    while len(got) < count:
        batch = await anext(batches)
        got += [m.payload for m in batch]
        ack = None if acknowledging is None else acknowledging.acknowledgement(batch)
        if ack is not None:
            ack()
    return got
