"""What every agent does around its work: retrying a step a failing server interrupted until
the server is back, and parking a poison event within seconds, so one event cannot stop a
stream and an outage loses none (what Kafka carries is decoded in :mod:`streams.decoding`).

A step that fails because a server is down, restarting or unreachable (``adapters.faults``)
is retried with the one backoff for up to :data:`OUTAGE_PATIENCE_S`: the events behind it would
fail the same way, and a fall must not be given up because Postgres restarted. Any other
failure is retried for :data:`POISON_WITHIN_S`, then the event is parked on the dead-letter
topic with its reason (``poison``, or ``outage`` once the patience ran out), where
``careknot deadletter replay`` can put it back once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from adapters.faults import passing
from kernel.backoff import Backoff

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.2
RETRY_CAP_S = 2.0
POISON_WITHIN_S = 4.0
"""A step failing for another reason than a server's is given up this soon (under 5 s)."""
OUTAGE_PATIENCE_S = 300.0
"""A step failing because a server is away is retried this long before its event is parked."""
POISON = "poison"
OUTAGE = "outage"
T = TypeVar("T")

Park = Callable[[str, str], Awaitable[None]]
"""Park the event on the dead-letter topic with (reason, detail)."""


async def with_retries(
    what: str,
    step: Callable[[], Awaitable[T]],
    park: Park | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T | None:
    """Run one step of an agent, and give its result; retried while a server is away, given
    up on quickly for any other failure, when the event is parked with ``park`` (and None
    given)."""
    backoff = Backoff(first=RETRY_FIRST_S, cap=RETRY_CAP_S)
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await step()
        except Exception as exc:
            outage = passing(exc)
            left = (OUTAGE_PATIENCE_S if outage else POISON_WITHIN_S) - (clock() - started)
            if left <= 0:
                reason = OUTAGE if outage else POISON
                log.exception("%s failed %d times; parking it (%s)", what, attempt, reason)
                if park is not None:
                    await park(reason, f"{type(exc).__name__}: {exc}"[:500])
                return None
            log.warning("%s failed (attempt %d), retrying", what, attempt, exc_info=attempt == 1)
            await sleep(min(backoff.next(), left))


async def guarded(what: str, step: Callable[[], Awaitable[object]]) -> bool:
    """Run a timer's step; it never raises (a Faust timer that raises stops its worker): a
    failure is logged, with its traceback unless a server is away, and the next tick tries
    again. Whether the step went through."""
    try:
        await step()
    except Exception as exc:
        log.warning("%s failed (%s)", what, exc, exc_info=not passing(exc))
        return False
    return True
