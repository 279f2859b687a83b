"""The devices worker's watch over each home's routine (``streams.routine_keeper``): the home
events the history keeps are scored as they come, and a timer every ``routine_tick_s`` scores
every home whether or not anything came (silence is the signal) and retrains the homes whose
day began; only while the worker holds its partitions.

A watch step that fails (a server away) is logged and the watch is read again from the record
at the next tick, so no event the history kept is missed by it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial

import faust

from adapters.metrics import RoutineMetrics
from kernel.contracts import DeviceEvent
from kernel.settings import Settings
from streams.handling import guarded
from streams.routine_keeper import RoutineKeeper
from streams.runtime import Runtime


def register(app: faust.App, rt: Runtime, s: Settings) -> RoutineKeeper:
    keeper = RoutineKeeper(s, rt.db, rt.dispatcher.alarms, rt.send_command, time.time)
    RoutineMetrics(keeper, rt.dead_letters.metrics.registry)

    @app.timer(s.routine_tick_s)  # type: ignore[untyped-decorator]
    async def routine_watch() -> None:
        if not app.consumer.assignment():
            return
        await rt.ready()
        if not await guarded("routines", keeper.tick):
            keeper.forget()

    return keeper


async def kept(keeper: RoutineKeeper, events: list[DeviceEvent]) -> None:
    """Events the history kept, to the watch; a failure makes it read the record again."""
    if not await guarded("routines of kept events", partial(keeper.events, events)):
        keeper.forget()


def feed(keeper: RoutineKeeper) -> Callable[[list[DeviceEvent]], Awaitable[None]]:
    return partial(kept, keeper)
