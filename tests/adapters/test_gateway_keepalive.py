"""The gateway's one keepalive for every connection, on real Redis and Kafka (tansu): a client
that answers its pings stays, one that has gone silent is closed 1011 and let go."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.protocol import State

from kernel import tokens
from kernel.settings import Settings
from kernel.waiting import poll_until
from ws_gateway import keepalive
from ws_gateway.connection import Connection
from ws_gateway.server import Gateway

pytestmark = pytest.mark.servers

WITHIN_S = 10.0


@pytest.fixture
async def gateway(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Gateway]:
    """A gateway of its own whose keepalive pings every 0.2 s and waits 0.5 s for a pong."""
    monkeypatch.setattr(keepalive, "PING_INTERVAL_S", 0.2)
    monkeypatch.setattr(keepalive, "PING_TIMEOUT_S", 0.5)
    async with Gateway(stack_settings.model_copy(update={"gateway_port": 0})) as gw:
        yield gw


def bearer(settings: Settings, caregiver: str) -> dict[str, str]:
    ring = tokens.keyring_of(settings)
    token = tokens.mint(ring, "caregiver", caregiver, "a1", 600.0, time.time())
    return {"Authorization": f"Bearer {token}"}


async def held(gw: Gateway, recipient: str) -> Connection:
    async def probe() -> Connection | None:
        conns = gw.connections_of(recipient)
        return conns[0] if conns else None

    return await poll_until(probe, within=WITHIN_S, what=f"{recipient} connected")


async def test_a_client_that_answers_its_pings_stays_open(
    gateway: Gateway, stack_settings: Settings
) -> None:
    url = f"ws://127.0.0.1:{gateway.port}/ws"
    async with connect(url, additional_headers=bearer(stack_settings, "cg-ka-1")) as ws:
        await ws.recv()  # hello
        conn = await held(gateway, "cg:cg-ka-1")
        for _ in range(3):  # three pongs, each after the last: three rounds of the keepalive
            before = conn.ws.latency

            async def answered(before: float = before) -> bool | None:
                return True if conn.ws.latency != before else None

            await poll_until(answered, within=WITHIN_S, what="a pong to the gateway's ping")
        assert conn.ws.state is State.OPEN and ws.state is State.OPEN


async def test_a_client_gone_silent_is_closed_1011_and_let_go(
    gateway: Gateway, stack_settings: Settings
) -> None:
    """A client that reads nothing more (a phone out of coverage) answers no ping: it is closed
    with websockets' own keepalive code and reason, and the gateway holds it no longer."""
    url = f"ws://127.0.0.1:{gateway.port}/ws"
    headers = bearer(stack_settings, "cg-ka-2")
    async with connect(url, additional_headers=headers, close_timeout=0.5) as ws:
        await ws.recv()  # hello
        conn = await held(gateway, "cg:cg-ka-2")
        ws.transport.pause_reading()

        async def let_go() -> bool | None:
            return True if not gateway.connections_of("cg:cg-ka-2") else None

        await poll_until(let_go, within=WITHIN_S, what="the silent client let go")
        sent = conn.ws.protocol.close_sent
        assert sent is not None
        assert (sent.code, sent.reason) == (1011, keepalive.TIMED_OUT)
