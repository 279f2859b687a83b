"""Per-connection frame budgets against real Redis and Kafka (tansu): a client over its budget
is told ``rate_limited`` (counted, in ``/metrics``) and closed (1008) if it goes on; each kind
of frame has its own budget, so a flood of pings leaves a caregiver her answers, and a
dispatcher's flood of commands starves neither her other frames nor caregivers' answers.

The gateway here lets each kind of frame through three at once and refills its budgets so
slowly (one frame in 1,000 s) that none comes back while a test runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection

from kernel.settings import Settings
from tests.adapters.gateway_clients import (
    client,
    close_code,
    http_get,
    namespace_redis,
    put_offer,
    recv,
    send,
    token,
)
from tests.support import own_gateway
from ws_gateway.server import Gateway

pytestmark = pytest.mark.servers

BURST = 3


@pytest.fixture(scope="module")
def settings(stack_settings: Settings) -> Settings:
    return own_gateway(stack_settings, gateway_frame_rate=0.001, gateway_frame_burst=BURST)


@pytest.fixture(scope="module")
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    async with Gateway(settings) as gw:
        yield gw


@pytest.fixture(scope="module")
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    async with namespace_redis(settings) as redis:
        yield redis


async def answers_to(ws: ClientConnection, frame: dict[str, Any], times: int) -> list[str]:
    """Send ``frame`` ``times`` times, one after another: the type of each answer, with the
    reason of an error."""
    got = []
    for _ in range(times):
        await send(ws, frame)
        answer = await recv(ws)
        got.append(f"error:{answer['reason']}" if answer["type"] == "error" else answer["type"])
    return got


PING = {"type": "ping"}


async def test_a_flood_of_pings_is_refused_and_leaves_a_caregiver_her_answers(
    gateway: Gateway, settings: Settings, redis_client: aioredis.Redis
) -> None:
    offer_id, _ = await put_offer(redis_client, settings, "cg-pings")
    async with client(gateway, token=token(settings, "caregiver", "cg-pings")) as ws:
        await recv(ws)
        assert (
            await answers_to(ws, PING, BURST + 2) == ["pong"] * BURST + ["error:rate_limited"] * 2
        )
        await send(ws, {"type": "accept", "offer_id": offer_id})
        assert await recv(ws) == {"type": "ack", "offer_id": offer_id}


async def test_a_client_that_goes_on_over_its_budget_is_closed_and_counted(
    gateway: Gateway, settings: Settings
) -> None:
    before = gateway.counters.rejected["rate_limited"]
    async with client(gateway, token=token(settings, "caregiver", "cg-flood")) as ws:
        await recv(ws)
        said = await answers_to(ws, PING, 2 * BURST + 1)
        assert said == ["pong"] * BURST + ["error:rate_limited"] * (BURST + 1)
        assert await close_code(ws) == 1008
    assert gateway.counters.rejected["rate_limited"] - before == BURST + 1
    status, _, body = await http_get(gateway, "/metrics", admin=True)
    assert status == 200
    assert b'careknot_gateway_rejected_total{reason="rate_limited"} ' in body
    assert b"careknot_gateway_rate_closed_total 1\n" in body


async def test_a_dispatchers_flood_of_commands_starves_nobody_else(
    gateway: Gateway, settings: Settings, redis_client: aioredis.Redis
) -> None:
    offer_id, _ = await put_offer(redis_client, settings, "cg-calm")
    dispatcher = token(settings, "dispatcher", "d-flood", agency="a1")
    resolve = {"type": "resolve", "incident_id": "i-flood"}
    async with (
        client(gateway, token=dispatcher) as flooding,
        client(gateway, token=token(settings, "caregiver", "cg-calm")) as calm,
    ):
        await recv(flooding)
        await recv(calm)
        said = await answers_to(flooding, resolve, BURST + 1)
        assert said == ["ack"] * BURST + ["error:rate_limited"]
        assert await answers_to(flooding, PING, 1) == ["pong"]  # her other frames go on
        await send(calm, {"type": "accept", "offer_id": offer_id})
        assert await recv(calm) == {"type": "ack", "offer_id": offer_id}
