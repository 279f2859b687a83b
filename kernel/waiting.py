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
    """Whether a server's ping succeeds (no :class:`StorageError`) within ``within`` seconds."""
    try:
        await asyncio.wait_for(ping, within)
    except (StorageError, TimeoutError):
        return False
    return True
