"""A health check's answer: a server's ping within its time, and never waiting on a ping that
will not give up (no servers: the pings are the test's own coroutines)."""

from __future__ import annotations

import asyncio

import pytest

from kernel import waiting
from kernel.errors import StorageError
from kernel.waiting import answers, poll_until

GUARD_S = 5.0
"""How long the test waits for an answer that must come at once: a hang fails it."""


async def test_a_ping_that_succeeds_answers_and_one_that_fails_so_does_not() -> None:
    async def up() -> None:
        return None

    async def down() -> None:
        raise StorageError("redis: connection refused")

    assert await answers(up(), within=1.0)
    assert not await answers(down(), within=1.0)


async def test_a_fault_that_is_not_a_servers_is_raised() -> None:
    async def broken() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        await answers(broken(), within=1.0)


async def test_a_ping_out_too_long_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    assert not await asyncio.wait_for(answers(slow(), within=0.05), GUARD_S)
    await asyncio.wait_for(cancelled.wait(), GUARD_S)


async def test_a_ping_that_holds_back_its_cancellation_is_not_waited_for() -> None:
    """A client library that goes on after being cancelled (retrying its connection): the check
    answers no in its time, and the ping is let go until it ends by itself."""
    release, ended = asyncio.Event(), asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # holds its cancellation back until released
        finally:
            ended.set()

    assert not await asyncio.wait_for(answers(stubborn(), within=0.05), GUARD_S)
    assert not ended.is_set() and len(waiting._LET_GO) == 1
    release.set()

    async def forgotten() -> bool | None:
        return True if not waiting._LET_GO else None

    await poll_until(forgotten, GUARD_S, "the ping let go to end")
    assert ended.is_set()
