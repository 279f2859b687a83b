"""What every agent does around its work: retrying a step a failing server interrupted, so one
poisoned event cannot stop a stream (what Kafka carries is decoded in :mod:`streams.decoding`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kernel.backoff import Backoff

log = logging.getLogger(__name__)

RETRIES = 5
RETRY_FIRST_S = 0.4
RETRY_CAP_S = 3.2
"""Between the tries, 3 to 6 s in all: a server back within a few seconds loses no event."""
T = TypeVar("T")


async def with_retries(what: str, step: Callable[[], Awaitable[T]]) -> T | None:
    """Run one step of an agent, and give its result; a failing server gets a few tries before
    the event is logged as failed (None), so one poisoned event cannot stop the stream."""
    backoff = Backoff(first=RETRY_FIRST_S, cap=RETRY_CAP_S)
    for attempt in range(1, RETRIES + 1):
        try:
            return await step()
        except Exception:
            if attempt == RETRIES:
                log.exception("%s failed %d times; giving up on it", what, RETRIES)
                return None
            log.warning("%s failed (attempt %d), retrying", what, attempt, exc_info=True)
            await asyncio.sleep(backoff.next())
    return None
