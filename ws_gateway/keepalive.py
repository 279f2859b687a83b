"""One keepalive for every connection of a gateway, where websockets keeps a task a connection.

Every :data:`PING_INTERVAL_S` each open connection is pinged once, a slice of them every
:data:`SLICE_S` so that ten thousand pings are spread over the interval; one whose pong has not
come within :data:`PING_TIMEOUT_S` is closed 1011 (as websockets' own keepalive closes it). A
client gone without a word (a phone out of coverage, a laptop shut) is so noticed within about
40 s and what it held is freed. A ping waits in a task of its own only while it is out, gone
with its pong: an idle connection holds no keepalive task (~1.4 KiB each, by ``tracemalloc``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Iterable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from ws_gateway.connection import CLOSE_INTERNAL_ERROR

PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 20.0
SLICE_S = 1.0
TIMED_OUT = "keepalive ping timeout"


async def keep_alive(
    sockets: Callable[[], Iterable[ServerConnection]],
    interval_s: float = PING_INTERVAL_S,
    timeout_s: float = PING_TIMEOUT_S,
) -> None:
    """Ping the open ``sockets`` (asked once a round: those opened since join the next), each
    once a round of ``interval_s``, until cancelled."""
    pinging: set[asyncio.Task[None]] = set()
    slices = max(1, round(interval_s / SLICE_S))
    try:
        while True:
            now_open = [ws for ws in sockets() if ws.state is State.OPEN]
            per_slice = math.ceil(len(now_open) / slices)
            for k in range(slices):
                for ws in now_open[k * per_slice : (k + 1) * per_slice]:
                    task = asyncio.create_task(_ping(ws, timeout_s))
                    pinging.add(task)
                    task.add_done_callback(pinging.discard)
                await asyncio.sleep(interval_s / slices)
    finally:
        for task in pinging:
            task.cancel()


async def _ping(ws: ServerConnection, timeout_s: float) -> None:
    """Ping one connection; close it (1011) when its pong, or the ping's own way out to a
    client that reads nothing, takes longer than ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            pong = await ws.ping()
            await pong
    except TimeoutError:
        with contextlib.suppress(ConnectionClosed):
            await ws.close(CLOSE_INTERNAL_ERROR, TIMED_OUT)
    except ConnectionClosed:
        pass
