"""The devices worker's watch over every home device's health (``streams.device_keeper``):

- ``device-status``: heartbeats, births and last wills, in batches, judged in order (a device's
  messages share a partition, keyed by device); a batch Postgres or Redis cannot take now is
  retried while the server is away, one that cannot be handled parked (``streams.handling``).
- a timer, every :data:`WATCH_S`, finds the devices whose heartbeats stopped, and the flapping
  ones that steadied; only while the worker holds its partitions (a worker waiting for its
  group judges nobody's silence).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import faust

from kernel import keys
from kernel.contracts import DeviceStatus
from kernel.settings import Settings
from streams.device_keeper import DeviceKeeper
from streams.handling import guarded, with_retries
from streams.runtime import Runtime

WATCH_S = 1.0
STATUSES_A_BATCH = 500
BATCH_WITHIN_S = 0.1


def register(app: faust.App, rt: Runtime, s: Settings, topic: Callable[[str], Any]) -> None:
    keeper = DeviceKeeper(s, rt.db, rt.dispatcher.alarms, time.time)

    @app.agent(topic(keys.DEVICE_STATUS), name="device-health")
    async def device_health(stream: Any) -> None:
        async for values in stream.take(STATUSES_A_BATCH, within=BATCH_WITHIN_S):
            statuses = await rt.decode(DeviceStatus, values, keys.DEVICE_STATUS)
            if not statuses:
                continue
            await rt.ready()
            park = rt.parker(keys.DEVICE_STATUS, values)
            step = partial(keeper.on_status, statuses)
            await with_retries(f"{len(statuses)} device statuses", step, park)

    @app.timer(WATCH_S)  # type: ignore[untyped-decorator]
    async def device_watch() -> None:
        if not app.consumer.assignment():
            return
        await rt.ready()
        await guarded("device health", keeper.tick)
