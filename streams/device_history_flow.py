"""The devices worker's record of every device event: each home's event history
(:mod:`adapters.storage.device_history`), written in batches, whatever else an event does.

It reads the device-events topic (what acts: falls, SOS calls, dispensers) in the ``devices``
role's own consumer group, so the dispatch worker, which acts on the same events, never waits
on it, and the home-activity topic (ambient sensors: motion, doors, packed many to a message
by ingest), which the routines' watch (``streams.routine_flow``) takes once they are kept. A
batch Postgres cannot take now is retried while the server is away (``streams.handling``);
nothing accepted is dropped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

import faust
from pydantic import TypeAdapter

from adapters.storage.device_history import DeviceHistory
from kernel import keys
from kernel.contracts import DeviceEvent
from kernel.settings import Settings
from streams.decoding import Refused, decode_packed
from streams.handling import with_retries
from streams.runtime import Runtime

_EVENTS = TypeAdapter(list[DeviceEvent])
EVENTS_A_BATCH = 256
"""Messages a batch: an event each on device-events, up to
``ingest.batching.MAX_FIXES_PER_MESSAGE`` (500) packed in each on home-activity."""
BATCH_WITHIN_S = 0.2
"""A history is read later, never at once: fewer, larger inserts cost Postgres and the worker
less."""


Kept = Callable[[list[DeviceEvent]], Awaitable[None]]
"""What is told of the events once they are kept (the routines' watch): it never raises."""


def register(
    app: faust.App,
    rt: Runtime,
    s: Settings,
    topic: Callable[[str], Any],
    kept: Kept | None = None,
) -> None:
    history = DeviceHistory(rt.db)
    for name in (keys.DEVICE_EVENTS, keys.HOME_ACTIVITY):
        app.agent(topic(name), name=f"history-{name}")(_keeper(rt, history, name, kept))


def _keeper(
    rt: Runtime, history: DeviceHistory, name: str, kept: Kept | None
) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """The agent that keeps the events of the logical topic ``name``, a batch at a time."""

    async def keep(stream: Any) -> None:
        async for values in stream.take(EVENTS_A_BATCH, within=BATCH_WITHIN_S):
            refused: list[Refused] = []
            events = decode_packed(DeviceEvent, _EVENTS, values, refused)
            await rt.park(name, refused)
            if not events:
                continue
            await rt.ready()
            park = rt.parker_of(name, events)
            step = partial(history.keep, events)
            done = await with_retries(f"{len(events)} device events", step, park)
            if done is not None and kept is not None:
                await kept(events)

    return keep
