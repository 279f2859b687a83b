"""Waiting for a condition another process makes true, with a deadline (never a bare sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kernel.errors import StorageError

T = TypeVar("T")
POLL_S = 0.05


async def poll_until(probe: Callable[[], Awaitable[T | None]], within: float, what: str) -> T:
    """Call ``probe`` until it returns something other than None; TimeoutError after ``within``."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(POLL_S)


HEALTH_TIMEOUT_S = 2.0


async def answers(ping: Awaitable[None], within: float = HEALTH_TIMEOUT_S) -> bool:
    """Whether a server's ping succeeds (no :class:`StorageError`) within ``within`` seconds.

    A ping still out by then is cancelled and left to end by itself: the answer never waits for
    it to, where ``asyncio.wait_for`` would, and a client library slow to give up (one retrying
    a connection, or holding its cancellation back) would hold the health check, and a server
    stopping and waiting for that check, as long as it pleases."""
    out = asyncio.ensure_future(ping)
    try:
        done, _ = await asyncio.wait({out}, timeout=within)
    except asyncio.CancelledError:
        _let_go(out)
        raise
    if not done:
        _let_go(out)
        return False
    failure = out.exception()
    if failure is None:
        return True
    if isinstance(failure, StorageError):
        return False
    raise failure


_LET_GO: set[asyncio.Future[None]] = set()
"""Pings cancelled and not waited for, kept until they end."""


def _let_go(out: asyncio.Future[None]) -> None:
    out.cancel()
    _LET_GO.add(out)
    out.add_done_callback(_ended)


def _ended(out: asyncio.Future[None]) -> None:
    _LET_GO.discard(out)
    if not out.cancelled():
        out.exception()  # retrieved: a late failure of a ping let go is no news
