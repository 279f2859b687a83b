"""Fault scenarios, short: the whole system at load on servers of its own, one fault each,
counting what was published against what reached Postgres, Redis and the WebSocket
(``careknot bench faults`` runs them all, longer). And the proxy the network faults go
through, on its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from careknot.bench import options
from careknot.faults.proxy import ProxyThread, TcpProxy
from careknot.faults.scenarios import CI_SCENARIOS, SCENARIOS, Options, Run
from careknot.faults.servers import FaultServers
from kernel.settings import Settings
from tests.support import free_port

pytestmark = [pytest.mark.servers, pytest.mark.journey]

SHORT = Options(
    events=1500,
    rate=300.0,
    falls=15,
    caregivers=5,
    load_caregivers=100,
    down_s=1.0,
    proxy_s=5.0,
    recover_within_s=90.0,
    drain_within_s=60.0,
)


def test_the_benchmark_names_every_scenario() -> None:
    assert tuple(SCENARIOS) == options.FAULT_SCENARIOS


@pytest.fixture(scope="module")
def servers() -> Iterator[FaultServers]:
    with FaultServers() as started:
        yield started


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", CI_SCENARIOS)
async def test_nothing_accepted_is_lost_or_doubled_and_the_system_recovers(
    name: str, servers: FaultServers, tmp_path: Path
) -> None:
    figures = await Run(SCENARIOS[name], SHORT, servers, Settings(), tmp_path).run()
    falls, ws = figures["falls"], figures["websocket"]
    whole = json.dumps(figures, indent=1, default=str)  # what a failure shows, untruncated
    assert figures["fault"]
    assert figures["published"] > 0
    assert figures["accepted"] > 0
    assert figures["lost"] == 0, whole
    assert figures["duplicated"] == 0, whole
    assert falls["assigned_or_escalated"] == falls["accepted"] > 0, whole
    assert ws["all_connected_at_end"], whole
    assert figures["fixes"]["stale_live_positions"] == 0, whole
    assert figures["recovered_s"] is not None, whole


# ---------------------------------------------------------------- the proxy alone


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await r.read(1024):
                w.write(data)
                await w.drain()
        w.close()

    port = free_port()
    server = await asyncio.start_server(echo, "127.0.0.1", port)
    try:
        yield port
    finally:
        server.close()


async def _round_trip(
    r: asyncio.StreamReader, w: asyncio.StreamWriter, data: bytes, within: float = 5.0
) -> bytes:
    w.write(data)
    await w.drain()
    async with asyncio.timeout(within):
        return await r.readexactly(len(data))


async def _connect_and_send(port: int, data: bytes) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await _round_trip(r, w, data)
    finally:
        w.close()


async def test_the_proxy_passes_delays_holds_and_resets() -> None:
    async with echo_server() as upstream:
        with ProxyThread(TcpProxy(free_port(), upstream, latency_s=0.05)) as proxy:
            r, w = await asyncio.open_connection("127.0.0.1", proxy.proxy.port)
            assert await _round_trip(r, w, b"pass") == b"pass"
            proxy.set_mode("latency")
            assert await _round_trip(r, w, b"late") == b"late"
            proxy.set_mode("blackhole")
            with pytest.raises(TimeoutError):
                await _round_trip(r, w, b"held", within=0.5)
            proxy.set_mode("pass")
            async with asyncio.timeout(5):
                assert await r.readexactly(4) == b"held"  # late, as TCP delivers it
            proxy.set_mode("reset")
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await _round_trip(r, w, b"gone")
            w.close()
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await _connect_and_send(proxy.proxy.port, b"refused")  # a new one is reset too
            proxy.set_mode("pass")
            r3, w3 = await asyncio.open_connection("127.0.0.1", proxy.proxy.port)
            assert await _round_trip(r3, w3, b"healed") == b"healed"
            w3.close()
            assert proxy.proxy.resets >= 2
