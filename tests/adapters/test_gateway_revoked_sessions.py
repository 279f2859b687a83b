"""A revocation ends a person's sign-in sessions at the gateway, renewed tokens too: a token
renewed after she signed in but revoked at a moment before the renewal was issued is refused on
connect and closes an open connection at its next check; the revocations are kept as long as a
session and its last token may last."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import annotated_types
import orjson
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect

from adapters.storage import revocations
from adapters.storage.revocations import Revocations
from kernel import tokens
from kernel.settings import Settings
from tests.adapters.gateway_clients import namespace_redis
from tests.support import own_gateway
from ws_gateway import conversation
from ws_gateway.server import Gateway

pytestmark = pytest.mark.servers

TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def settings(stack_settings: Settings) -> Settings:
    return own_gateway(stack_settings)


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    async with namespace_redis(settings) as redis:
        yield redis


def _connect(gw: Gateway, token: str) -> connect:
    headers = {"Authorization": f"Bearer {token}"}
    return connect(
        f"ws://127.0.0.1:{gw.port}/ws", open_timeout=TIMEOUT_S, additional_headers=headers
    )


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
    return frame


def _renewed(settings: Settings, sub: str, signed_in: float) -> str:
    """Her token of a sign-in at ``signed_in``, renewed now."""
    ring = tokens.keyring_of(settings)
    first = tokens.verify(
        tokens.mint(ring, "dispatcher", sub, "a1", 600.0, signed_in), ring, signed_in
    )
    return tokens.renew(
        first, ring, time.time(), settings.token_ttl_s, settings.token_session_max_s
    )


async def test_a_renewed_token_of_a_revoked_session_is_refused_on_connect_and_closed(
    settings: Settings, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conversation, "TOKEN_CHECK_S", 0.2)
    signed_in = time.time() - 120
    revoked = Revocations(redis_client, settings.keys)
    async with Gateway(settings) as gw:
        # on connect: revoked at a moment before the renewal, after she signed in
        before = _renewed(settings, "d-refused", signed_in)
        await revoked.revoke("dispatcher", "d-refused", signed_in + 60)
        async with _connect(gw, before) as ws:
            refused = await _recv(ws)
            assert (refused["reason"], refused["detail"]) == ("unauthorised", "token revoked")
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT_S)
            assert ws.close_code == 4401

        # on its periodic check: taken, then revoked (the same moment, in its past)
        held = _renewed(settings, "d-closed", signed_in)
        async with _connect(gw, held) as ws:
            assert (await _recv(ws))["type"] == "hello"
            await revoked.revoke("dispatcher", "d-closed", signed_in + 60)
            refused = await _recv(ws)
            assert (refused["reason"], refused["detail"]) == ("unauthorised", "token revoked")
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT_S)
            assert ws.close_code == 4401

        # signed in again after the revocation: taken
        again = _renewed(settings, "d-closed", time.time())
        async with _connect(gw, again) as ws:
            assert (await _recv(ws))["type"] == "hello"


def _most(field: str) -> float:
    """The most a setting may be."""
    info = Settings.model_fields[field]
    most = next(m.le for m in info.metadata if isinstance(m, annotated_types.Le))
    assert isinstance(most, int | float)
    return float(most)


def test_revocations_are_kept_as_long_as_a_session_and_its_last_token_last() -> None:
    assert _most("token_session_max_s") + _most("token_ttl_s") <= revocations.KEPT_S
