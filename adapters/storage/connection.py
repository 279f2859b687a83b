"""A service's Redis connection, and the stores made on it.

The services above the adapters never hold a Redis client: they open a
:class:`RedisConnection`, ask it for the stores they need (the live index and its copy, the
outboxes, the offer records, the visit store), and close it when they stop. The worker's
heartbeat is written here too (a failed one comes out as :class:`StorageError`).

A store is made with the settings it is given, not the connection's: the dispatcher of a test
may run with offer windows of its own on the same Redis.
"""

from __future__ import annotations

from typing import Self

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters.storage.announcements import Announcements
from adapters.storage.live import LiveIndex
from adapters.storage.live_mirror import LiveMirror
from adapters.storage.offer_records import OfferRecords
from adapters.storage.outbox import Outbox
from adapters.storage.postgres import Database
from adapters.storage.rebuild import Rebuilt, rebuild
from adapters.storage.revocations import Revocations
from adapters.storage.visit_store import VisitStore
from kernel.errors import StorageError
from kernel.keys import Keys
from kernel.settings import Settings

RETRIES = 3


class RedisConnection:
    """One Redis client, shared by the stores made on it."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    @classmethod
    def open(cls, url: str) -> Self:
        """A connection to the Redis at ``url``; the client connects on first use. A command
        whose connection was lost (Redis restarted) is tried again on a new one, a few times
        within a second, before its error comes out. Most writes are safe to repeat (the live
        index keeps the newest, an announcement is told once); a frame sent with
        :meth:`Outbox.send` whose reply was lost may go out twice, with two seqs."""
        retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), RETRIES)
        client = aioredis.Redis.from_url(
            url, retry=retry, retry_on_error=[RedisConnectionError, RedisTimeoutError]
        )
        return cls(client)

    def live_index(self, settings: Settings) -> LiveIndex:
        return LiveIndex(self._client, settings)

    def live_mirror(self, settings: Settings) -> LiveMirror:
        return LiveMirror(self._client, settings)

    def outbox(self, settings: Settings) -> Outbox:
        return Outbox(self._client, settings)

    def revocations(self, keys: Keys) -> Revocations:
        return Revocations(self._client, keys)

    def offer_records(self, keys: Keys) -> OfferRecords:
        return OfferRecords(self._client, keys)

    def announcements(self, db: Database, settings: Settings) -> Announcements:
        """The dispatcher's transactional outbox, told through this connection."""
        return Announcements(
            db, self.outbox(settings), self.offer_records(settings.keys), self.live_index(settings)
        )

    def visit_store(self, db: Database, settings: Settings) -> VisitStore:
        return VisitStore(db, self._client, settings)

    async def worker_alive(self, keys: Keys, role: str, at: float, ttl_s: int) -> None:
        """A worker of ``role`` is alive at ``at``: its health key says so for ``ttl_s``."""
        try:
            await self._client.set(keys.worker_health(role), str(at), ex=ttl_s)
        except (RedisError, OSError) as exc:
            raise StorageError(f"redis: writing the {role} worker's heartbeat: {exc}") from exc

    async def ping(self) -> None:
        """Raises :class:`StorageError` unless Redis answers."""
        try:
            await self._client.ping()
        except RedisError as exc:
            raise StorageError(f"redis: no answer to a ping: {exc}") from exc

    async def lost_its_data(self, keys: Keys) -> bool:
        """Whether Redis lost the namespace's data since any worker last asked (restarted
        without persistence, flushed): its mark is gone. The first to ask after a loss (or
        ever) sets the mark again and is told True, once; raises :class:`StorageError`."""
        try:
            return bool(await self._client.set(keys.incarnation(), "1", nx=True))
        except RedisError as exc:
            raise StorageError(f"redis: reading the namespace's mark: {exc}") from exc

    async def lose_mark(self, keys: Keys) -> None:
        """Take the mark away again: a resync that failed is done by the next to ask."""
        try:
            await self._client.delete(keys.incarnation())
        except RedisError as exc:
            raise StorageError(f"redis: removing the namespace's mark: {exc}") from exc

    async def rebuild(self, db: Database, settings: Settings) -> Rebuilt:
        """Put the live picture back from the record (:mod:`adapters.storage.rebuild`);
        raises :class:`StorageError`."""
        try:
            return await rebuild(db, self._client, settings)
        except RedisError as exc:
            raise StorageError(f"redis: rebuilding the live picture: {exc}") from exc

    async def close(self) -> None:
        await self._client.aclose()
