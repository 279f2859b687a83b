"""A subscription kept for ever: the connection made again whenever the broker is lost.

``async with Subscription(host, port, topics, name=...) as s`` makes the first connection:
within ``start_timeout_s``, else :class:`~kernel.errors.BrokerUnavailable` comes out, so a
broker address that is wrong fails the start instead of filling a log with warnings. From then
on :meth:`Subscription.batches` hands out what comes, for ever: a lost connection is logged as a
warning and made again after the backoff's wait. The backoff is reset once a connection has
delivered a batch, not once it is subscribed, so a broker that takes connections and drops
them is tried ever more slowly. Only a lost or unreachable broker is retried; whatever the
caller raises while handling a batch goes to the caller.

Given a ``session`` (a client id), every connection is of that persistent MQTT session: what
arrives while it is away is queued by the broker, and what a connection delivered and did not
acknowledge is sent again to the next. A batch is acknowledged when its caller says so
(:meth:`Subscription.acknowledgement`), on the connection that delivered it; a caller that
cannot take what it was given gives the connection up (:meth:`Subscription.renew`) to have it
again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, aclosing
from functools import partial
from types import TracebackType

from adapters.mqtt.access import BrokerAccess
from adapters.mqtt.client import INBOX_CAPACITY, BatchingClient, subscribed
from adapters.mqtt.frames import Publish
from kernel.backoff import Backoff
from kernel.errors import BrokerUnavailable

log = logging.getLogger(__name__)


START_TIMEOUT_S = 30.0
"""How long the first connection may take: a broker started alongside answers well within it, a
wrong address fails the start at once."""
RECONNECT_FIRST_S = 0.2
RECONNECT_CAP_S = 5.0
"""The backoff between tries to reach a lost broker: short, as device events wait on it."""


class Subscription:
    """Batches of what is published to ``topics``, across every loss of the broker; ``name``
    says whose connection it is in the log; each connection bounded by ``max_publish_bytes``
    and ``inbox_capacity`` (see :func:`adapters.mqtt.client.subscribed`)."""

    def __init__(
        self,
        host: str,
        port: int,
        topics: Iterable[str],
        *,
        name: str,
        start_timeout_s: float = START_TIMEOUT_S,
        backoff: Backoff | None = None,
        max_publish_bytes: int | None = None,
        inbox_capacity: int = INBOX_CAPACITY,
        session: str | None = None,
        access: BrokerAccess | None = None,
    ) -> None:
        self.name, self.topics, self.session = name, list(topics), session
        self._host, self._port, self._access = host, port, access
        self._max_publish_bytes, self._inbox_capacity = max_publish_bytes, inbox_capacity
        self._start_timeout_s = start_timeout_s
        self._backoff = backoff or Backoff(RECONNECT_FIRST_S, RECONNECT_CAP_S)
        self._connection = AsyncExitStack()
        self._client: BatchingClient | None = None

    async def __aenter__(self) -> Subscription:
        deadline = time.monotonic() + self._start_timeout_s
        try:
            await self._connect(deadline)
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(
                f"{self.name}: not subscribed within {self._start_timeout_s:.0f} s: {exc}"
            ) from exc
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._drop()

    async def batches(self, limit: int) -> AsyncGenerator[list[Publish], None]:
        """Batches of up to ``limit`` messages, for ever; each is acknowledged with :meth:`ack`
        once handled (a batch not acknowledged is lost with its connection)."""
        while True:
            client = self._client
            if client is None:
                client = await self._connect(math.inf)
                log.info("%s: subscribed again", self.name)
            try:
                async with aclosing(client.batches(limit)) as arriving:
                    async for batch in arriving:
                        self._backoff.reset()  # the connection has proven itself
                        yield batch
            except BrokerUnavailable as exc:
                await self._drop()
                await self._wait(exc)

    @property
    def connected(self) -> bool:
        """Whether it stands on a connection now (not while it waits to connect again)."""
        return self._client is not None

    def ack(self, batch: Iterable[Publish]) -> None:
        """Acknowledge the last batch handed out, once handled."""
        if self._client is not None:
            self._client.ack(batch)

    def acknowledgement(self, batch: Sequence[Publish]) -> Callable[[], None] | None:
        """What acknowledges ``batch``, the last handed out, later: on the connection that
        delivered it and only while that connection stands (the broker sends what a lost
        connection did not acknowledge again, to the session's next one); None when it holds
        nothing to acknowledge (QoS 0 alone)."""
        client = self._client
        if client is None or not any(p.qos for p in batch):
            return None
        return partial(self._ack, client, batch)

    def _ack(self, client: BatchingClient, batch: Sequence[Publish]) -> None:
        if client is self._client:
            client.ack(batch)

    def renew(self, why: str) -> None:
        """Give up the connection (what it delivered and was not acknowledged comes again,
        the session's) and make it again after the backoff's wait; the batches go on."""
        if self._client is not None:
            self._client.abandon(BrokerUnavailable(f"connection given up: {why}"))

    async def _connect(self, deadline: float) -> BatchingClient:
        """Connect and subscribe, trying again after the backoff's wait until ``deadline``
        (``time.monotonic()``) has passed."""
        while True:
            try:
                connecting = subscribed(
                    self._host,
                    self._port,
                    self.topics,
                    max_publish_bytes=self._max_publish_bytes,
                    inbox_capacity=self._inbox_capacity,
                    session=self.session,
                    access=self._access,
                )
                self._client = await self._connection.enter_async_context(connecting)
                return self._client
            except BrokerUnavailable as exc:
                if time.monotonic() >= deadline:
                    raise
                await self._wait(exc, deadline - time.monotonic())

    async def _wait(self, failure: BrokerUnavailable, at_most: float = math.inf) -> None:
        delay = min(self._backoff.next(), max(at_most, 0.0))
        log.warning("%s: %s; connecting again in %.1f s", self.name, failure, delay)
        await asyncio.sleep(delay)

    async def _drop(self) -> None:
        """Close the connection, whatever state it is in."""
        self._client = None
        try:
            await self._connection.aclose()
        except BrokerUnavailable as exc:
            log.debug("%s: closing a lost connection: %s", self.name, exc)
