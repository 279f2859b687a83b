"""Clients of the gateway as the tests open them: a short token of a role, a WebSocket with it,
frames sent and received within :data:`TIMEOUT_S`, a close code, the first matching record on a
Kafka topic, a plain HTTP GET, an offer put straight in Redis for a caregiver to answer, and a
Redis client that leaves the namespace empty."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer
from websockets.asyncio.client import ClientConnection, connect

from kernel import tokens
from kernel.contracts import Role as RoleName
from kernel.settings import Settings
from ws_gateway.server import Gateway

TIMEOUT_S = 10.0
Frame = dict[str, Any]


@contextlib.asynccontextmanager
async def namespace_redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """A client of the settings' Redis; on the way out every key of their namespace goes."""
    redis = aioredis.from_url(settings.redis_url)
    try:
        yield redis
    finally:
        keys = [key async for key in redis.scan_iter(match=settings.keys.everything())]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


def token(
    settings: Settings,
    role: RoleName,
    sub: str,
    agency: str = "a1",
    patients: list[str] | None = None,
) -> str:
    ring = tokens.keyring_of(settings)
    return tokens.mint(ring, role, sub, agency, 600.0, time.time(), patients)


def client(gw: Gateway, token: str | None = None, **params: str) -> connect:
    """A WebSocket to the gateway; its token in the Authorization header."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else None
    return connect(
        f"ws://127.0.0.1:{gw.port}/ws?{urlencode(params)}",
        open_timeout=TIMEOUT_S,
        additional_headers=headers,
    )


async def recv(ws: ClientConnection) -> Frame:
    frame: Frame = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
    return frame


async def send(ws: ClientConnection, frame: Frame) -> None:
    await ws.send(orjson.dumps(frame).decode())


async def close_code(ws: ClientConnection) -> int | None:
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT_S)
    return ws.close_code


async def consume(settings: Settings, topic: str, match: Callable[[Frame], bool]) -> Frame:
    """The first record on ``topic`` (from the beginning) whose JSON value matches."""
    consumer = AIOKafkaConsumer(
        settings.keys.topic(topic),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(TIMEOUT_S):
            async for record in consumer:
                value: Frame = orjson.loads(record.value)
                if match(value):
                    value["_key"] = record.key
                    return value
    finally:
        await consumer.stop()
    raise AssertionError("unreachable")


async def http_get(
    gw: Gateway, path: str, admin: bool = False
) -> tuple[int, dict[str, str], bytes]:
    port = gw.admin_port if admin else gw.port
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), TIMEOUT_S)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


async def put_offer(
    redis_client: aioredis.Redis, settings: Settings, caregiver_id: str
) -> tuple[str, str]:
    offer_id, incident_id = uuid.uuid4().hex, uuid.uuid4().hex
    await redis_client.hset(
        settings.keys.offer(offer_id),
        mapping={
            "caregiver_id": caregiver_id,
            "incident_id": incident_id,
            "agency_id": "a1",
            "expires_at": str(time.time() + 45),
        },
    )
    return offer_id, incident_id
