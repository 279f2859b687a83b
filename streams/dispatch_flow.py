"""The dispatch agents: emergencies, caregivers' answers, dispatchers' commands, and the
offer timer.

- ``device-events``: emergencies open incidents and start offer waves.
- ``offer-answers``: accepts and declines, and dispatchers' assign and resolve commands
  (partitioned by incident, so one incident's are handled in order by one worker).
- a timer expires offers past their window and moves their incidents on, and escalates
  incidents not accepted in time.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import faust

from dispatch.offers import ESCALATE_AFTER_S
from kernel import keys
from kernel.contracts import DeviceEvent, DispatcherCommand, OfferAnswer
from kernel.settings import Settings
from streams.handling import decode_all, with_retries
from streams.runtime import Runtime

TICK_S = 0.5


def register(app: faust.App, rt: Runtime, s: Settings, topic: Callable[[str], Any]) -> None:
    @app.agent(topic(keys.DEVICE_EVENTS), name="device-events")
    async def device_events(stream: Any) -> None:
        async for value in stream:
            for ev in decode_all(DeviceEvent, [value]):
                await rt.ready()
                await with_retries(ev.event_id, partial(rt.dispatcher.on_device_event, ev))

    @app.agent(topic(keys.OFFER_ANSWERS), name="offer-answers")
    async def answers(stream: Any) -> None:
        """Caregivers' answers and dispatchers' commands (``command`` marks the latter)."""
        async for value in stream:
            await rt.ready()
            if b'"command"' in value:
                for c in decode_all(DispatcherCommand, [value]):
                    await with_retries(c.command_id, partial(rt.dispatcher.on_command, c))
                continue
            for a in decode_all(OfferAnswer, [value]):
                await with_retries(a.answer_id, partial(rt.dispatcher.on_answer, a))

    @app.timer(TICK_S)  # type: ignore[untyped-decorator]
    async def offer_timer() -> None:
        await (await rt.ready()).dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)
