"""The gateway's relay stops when it is cancelled, even where the pub/sub it reads lets the
cancellation pass: a gateway stopping just after its Redis came back was seen waiting for ever
on its relay. The pub/sub here is the test's own stand-in, since no real Redis can be made to
swallow a cancellation on demand; it answers as redis-py's does when it swallows one: the
read returns nothing, as after its timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.storage.relay import OutboxChannels
from kernel.keys import Keys

GUARD_S = 5.0


class SwallowingPubSub:
    """Reads wait until cancelled, swallow the cancellation, and return no message."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.swallowed = 0

    async def get_message(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 (redis-py's signature)
    ) -> dict[str, Any] | None:
        self.reading.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.swallowed += 1
        return None


async def test_a_cancelled_relay_stops_though_its_pub_sub_swallowed_the_cancellation() -> None:
    pubsub = SwallowingPubSub()
    channels = OutboxChannels(pubsub, Keys("relay-cancel"))  # type: ignore[arg-type]

    async def relay() -> None:
        async for _ in channels.messages():
            pass

    task = asyncio.create_task(relay())
    await asyncio.wait_for(pubsub.reading.wait(), GUARD_S)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, GUARD_S)
    assert pubsub.swallowed == 1
