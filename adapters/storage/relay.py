"""What a WebSocket gateway adds to a service's Redis connection: the one subscription to every
recipient's outbox channel, which it relays live, and a ping for its health check.

:class:`GatewayConnection` is a :class:`~adapters.storage.connection.RedisConnection` (which
makes the outbox and the offer records the gateway reads) that is pinged on entry and closed
on exit. :class:`OutboxChannels` is the subscription. Redis errors become
:class:`StorageError` here, so the gateway catches only the project's errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Self

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import BlockingConnectionPool, Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters.storage.connection import RETRIES, RedisConnection
from kernel.errors import StorageError
from kernel.keys import Keys

POOL_SIZE = 100
READ_S = 1.0
"""The longest one read of the subscription waits before it returns to the relay."""
POOL_WAIT_S = 10.0


class GatewayConnection(RedisConnection):
    """A gateway's Redis connection: ``async with GatewayConnection.open(url)`` raises
    :class:`StorageError` when Redis does not answer, and closes the client on the way out.

    Its thousands of clients share :data:`POOL_SIZE` connections: a command waits for a free
    one (up to :data:`POOL_WAIT_S`) rather than failing at once, as the default pool does past
    its hundred, when they all ask at the same moment (phones reconnecting after a restart,
    every open connection's token checked in the same second)."""

    @classmethod
    def open(cls, url: str) -> Self:
        retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), RETRIES)
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT_S,
            retry=retry,
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        client = aioredis.Redis(connection_pool=pool)
        client.auto_close_connection_pool = True  # closing the client closes its pool
        return cls(client)

    async def __aenter__(self) -> GatewayConnection:
        try:
            await self.ping()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def outbox_channels(
        self, keys: Keys, on_reconnect: Callable[[], None] = lambda: None
    ) -> OutboxChannels:
        """A subscription to every recipient's outbox channel (enter it to subscribe);
        ``on_reconnect`` is called each time it subscribes again on a new connection, when
        what was published meanwhile never reached it."""
        pubsub = _Resubscribing(self._client.connection_pool, on_reconnect)
        return OutboxChannels(pubsub, keys)


class _Resubscribing(PubSub):
    """redis-py's subscription, which subscribes again by itself on a new connection (with the
    client's retries): that is the moment messages may have been missed, so it is told."""

    def __init__(self, pool: Any, on_reconnect: Callable[[], None]) -> None:
        super().__init__(pool)
        self._on_reconnect = on_reconnect

    async def on_connect(self, connection: Connection) -> None:
        """Called on each new connection but the first; subscribes again, then tells."""
        await super().on_connect(connection)
        if self.patterns:
            self._on_reconnect()


class OutboxChannels:
    """The subscription to every recipient's outbox channel.

    ``async with`` subscribes and, on the way out, closes the subscription. :meth:`messages`
    yields ``(recipient, message)`` until Redis is lost, then raises :class:`StorageError`;
    :meth:`resubscribe` reconnects (and so subscribes again) before the next :meth:`messages`.
    """

    def __init__(self, pubsub: PubSub, keys: Keys) -> None:
        self._pubsub = pubsub
        self._pattern = keys.out_channel("*")
        self._prefix = keys.out_channel("")

    async def __aenter__(self) -> OutboxChannels:
        try:
            await self._pubsub.psubscribe(self._pattern)
        except RedisError as exc:
            await self._close()
            raise StorageError(f"redis: subscribing to {self._pattern}: {exc}") from exc
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py

    async def resubscribe(self) -> None:
        """Reconnect if Redis was lost, which subscribes again (redis-py's pub/sub does so on
        connecting), and ping it; its ``pong`` is not a message."""
        try:
            await self._pubsub.ping()
        except RedisError as exc:
            raise StorageError(f"redis: resubscribing to {self._pattern}: {exc}") from exc

    async def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        """Every message published to a recipient, with that recipient, as it comes.

        Each read waits at most :data:`READ_S`, so a cancellation redis-py's pub/sub let pass
        (a gateway stopping just after its Redis came back: seen to leave the relay reading for
        ever, and the gateway's stop waiting for it) is still taken, at the next return."""
        prefix = self._prefix
        try:
            while True:
                message = await self._pubsub.get_message(timeout=READ_S)
                _raise_if_cancelled()
                if message is not None and message["type"] == "pmessage":
                    yield message["channel"].decode().removeprefix(prefix), message["data"]
        except RedisError as exc:
            raise StorageError(f"redis: relaying {self._pattern}: {exc}") from exc


def _raise_if_cancelled() -> None:
    """Raise the cancellation this task was given, if a library it awaited swallowed it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
