"""The dispatch agents: emergencies, caregivers' answers, dispatchers' commands, and the
offer timer.

- ``device-events``: emergencies open incidents and start offer waves.
- ``offer-answers``: accepts and declines, and dispatchers' assign and resolve commands
  (partitioned by incident, so one incident's are handled in order by one worker), alarms'
  acknowledgements and caregivers' medication administration log entries (by patient).
- a timer expires offers past their window and moves their incidents on, and escalates
  incidents not accepted in time; another watches the medication schedules.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import faust

from dispatch.offers import ESCALATE_AFTER_S
from kernel import keys
from kernel.contracts import Administration, AlarmCommand, DeviceEvent, DispatcherCommand
from kernel.settings import Settings
from streams.decoding import Refused, decode_answer
from streams.handling import guarded, with_retries
from streams.runtime import Runtime

TICK_S = 0.5
MEDICATION_TICK_S = 0.25


def register(app: faust.App, rt: Runtime, s: Settings, topic: Callable[[str], Any]) -> None:
    @app.agent(topic(keys.DEVICE_EVENTS), name="device-events")
    async def device_events(stream: Any) -> None:
        async for value in stream:
            for ev in await rt.decode(DeviceEvent, [value], keys.DEVICE_EVENTS):
                await rt.ready()
                park = rt.parker(keys.DEVICE_EVENTS, [value])
                await with_retries(ev.event_id, partial(rt.dispatcher.on_device_event, ev), park)

    @app.agent(topic(keys.OFFER_ANSWERS), name="offer-answers")
    async def answers(stream: Any) -> None:
        """Caregivers' answers and dispatchers' commands, told apart by their fields."""
        async for value in stream:
            await rt.ready()
            item = decode_answer(value)
            park = rt.parker(keys.OFFER_ANSWERS, [value] if value is not None else [])
            if isinstance(item, Refused):
                await rt.park(keys.OFFER_ANSWERS, [item])
            elif isinstance(item, DispatcherCommand):
                await with_retries(item.command_id, partial(rt.dispatcher.on_command, item), park)
            elif isinstance(item, AlarmCommand):
                step = partial(rt.dispatcher.on_alarm_command, item)
                await with_retries(item.command_id, step, park)
            elif isinstance(item, Administration):
                step = partial(rt.dispatcher.medication_log.on_administration, item)
                await with_retries(item.record_id, step, park)
            else:
                await with_retries(item.answer_id, partial(rt.dispatcher.on_answer, item), park)

    @app.timer(TICK_S)  # type: ignore[untyped-decorator]
    async def offer_timer() -> None:
        await guarded("offer timer", partial(offer_tick, rt))

    @app.timer(MEDICATION_TICK_S)  # type: ignore[untyped-decorator]
    async def medication_timer() -> None:
        """Doses whose windows closed untaken, told within a tick of closing: on a timer of
        its own, so a missed dose never waits for the offers' and the alarms' work."""
        await rt.ready()
        await guarded("medication", rt.dispatcher.medication.tick)


async def offer_tick(rt: Runtime) -> None:
    """The offer timer's step: Redis kept whole, then offers expired and incidents moved on,
    each whatever the other did."""
    await rt.ready()
    await guarded("keeping Redis whole", rt.keep_redis_whole)
    await rt.dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)
