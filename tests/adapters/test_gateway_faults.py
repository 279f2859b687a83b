"""Clients never silently miss a message: the gateway against a Redis of its own that is killed
(SIGKILL) and started again empty on the same port, and against its relay's connection being
cut while messages are published."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection

from adapters.storage.outbox import Outbox
from careknot.servers.embedded import Launcher, Started
from kernel import recipients
from kernel.contracts import OfferResultFrame
from kernel.settings import Settings
from tests.adapters.gateway_clients import Frame, client, recv, token
from tests.support import own_gateway
from ws_gateway.server import Gateway

pytestmark = pytest.mark.servers


class OwnRedis:
    """A Redis of the test's own, to kill and start again."""

    def __init__(self, workdir: Path) -> None:
        self.launcher = Launcher(workdir, use_installed=True, timeout=30.0)
        self.started: Started = self.launcher.redis("0")

    @property
    def port(self) -> int:
        return int(self.started.url.rsplit(":", 1)[1].split("/")[0])

    def kill(self) -> None:
        child = self.launcher.children[-1]
        child.proc.kill()
        child.proc.wait()

    async def start_again(self) -> None:
        """Empty, on the same port: as a Redis without persistence comes back."""
        self.started = await asyncio.to_thread(self.launcher.redis, "0", self.port)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    yield server
    server.launcher.close()


@pytest.fixture
def settings(stack_settings: Settings, own_redis: OwnRedis) -> Settings:
    return own_gateway(stack_settings, redis_url=own_redis.started.url)


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    async with Gateway(settings) as gw:
        yield gw


@contextlib.asynccontextmanager
async def reconnected(settings: Settings) -> AsyncIterator[Outbox]:
    redis = aioredis.from_url(settings.redis_url)
    try:
        yield Outbox(redis, settings)
    finally:
        await redis.aclose()


@pytest.fixture
async def box(settings: Settings) -> AsyncIterator[Outbox]:
    async with reconnected(settings) as outbox:
        yield outbox


def result(n: int) -> OfferResultFrame:
    return OfferResultFrame(offer_id=f"o{n}", outcome="taken")


async def frames_until(ws: ClientConnection, offer_id: str) -> list[Frame]:
    got = []
    while True:
        frame = await recv(ws)
        got.append(frame)
        if frame.get("offer_id") == offer_id:
            return got


async def test_a_client_whose_stream_redis_lost_is_told_to_resync_and_misses_nothing_new(
    gateway: Gateway, settings: Settings, box: Outbox, own_redis: OwnRedis
) -> None:
    me = recipients.caregiver("cg-1")
    async with client(gateway, token=token(settings, "caregiver", "cg-1")) as ws:
        hello = await recv(ws)
        assert hello["type"] == "hello"
        await box.send([(me, result(n)) for n in (1, 2, 3)])
        before = await frames_until(ws, "o3")
        assert [f["seq"] for f in before] == [1, 2, 3]
        epoch = before[0]["epoch"]
        own_redis.kill()
        await own_redis.start_again()  # empty: seqs start again at 1, in a new epoch
        async with reconnected(settings) as again:  # a worker's retry reconnects
            await again.send([(me, result(4))])
            after = await frames_until(ws, "o4")
            await again.send([(me, result(5))])
            fifth = await frames_until(ws, "o5")
        resync, (o4,) = after[0], after[1:]
        assert resync["type"] == "resync"
        assert resync["epoch"] == o4["epoch"] > epoch
        assert (o4["seq"], o4["offer_id"]) == (1, "o4")
        assert [(f["seq"], f["offer_id"]) for f in fifth] == [(2, "o5")]


async def test_what_is_published_while_the_relay_reconnects_is_sent_when_it_is_back(
    gateway: Gateway, settings: Settings, box: Outbox
) -> None:
    me = recipients.dispatchers("ag-1")
    admin = aioredis.from_url(settings.redis_url)
    try:
        async with client(gateway, token=token(settings, "dispatcher", "desk", "ag-1")) as ws:
            await recv(ws)  # hello
            await box.send([(me, result(1))])
            await frames_until(ws, "o1")
            # cut the relay's subscription, then publish at once, before it subscribes again
            assert await admin.client_kill_filter(_type="pubsub") >= 1
            await box.send([(me, result(n)) for n in (2, 3)])
            await box.send([(me, result(4))])
            got = await frames_until(ws, "o4")
            assert [(f["seq"], f["offer_id"]) for f in got] == [(2, "o2"), (3, "o3"), (4, "o4")]
            assert "resync" not in [f["type"] for f in got]
    finally:
        await admin.aclose()


async def test_a_client_resuming_before_the_new_stream_exists_is_resynced_by_its_first_message(
    gateway: Gateway, settings: Settings, box: Outbox, own_redis: OwnRedis
) -> None:
    me = recipients.caregiver("cg-2")
    async with client(gateway, token=token(settings, "caregiver", "cg-2")) as ws:
        await recv(ws)
        await box.send([(me, result(n)) for n in (1, 2, 3)])
        epoch = (await frames_until(ws, "o3"))[0]["epoch"]
    own_redis.kill()
    await own_redis.start_again()  # empty: nothing has made the recipient's new stream yet
    resume = {"token": token(settings, "caregiver", "cg-2"), "last_seq": "3", "epoch": str(epoch)}
    async with client(gateway, **resume) as ws:
        hello = await recv(ws)
        assert (hello["seq_now"], hello["epoch"]) == (0, 0)
        async with reconnected(settings) as again:
            await again.send([(me, result(4))])
            got = await frames_until(ws, "o4")
        assert [f["type"] for f in got] == ["resync", "offer_result"]
        assert (got[1]["seq"], got[0]["epoch"]) == (1, got[1]["epoch"])


async def test_a_client_counting_beyond_the_stream_is_resynced(
    gateway: Gateway, settings: Settings, box: Outbox
) -> None:
    me = recipients.caregiver("cg-3")
    await box.send([(me, result(n)) for n in (1, 2)])
    ahead = {"token": token(settings, "caregiver", "cg-3"), "last_seq": "40"}
    async with client(gateway, **ahead) as ws:
        await recv(ws)  # hello
        got = await frames_until(ws, "o2")
        assert [(f["type"], f.get("seq")) for f in got] == [
            ("resync", None),
            ("offer_result", 1),
            ("offer_result", 2),
        ]
