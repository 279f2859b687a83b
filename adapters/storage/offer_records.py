"""Offer records in Redis: what a gateway checks a caregiver's answer against.

The dispatcher writes one when it sends an offer, and ``careknot rebuild`` writes them back for
the offers still pending; the gateways only read them. A record is the hash
:meth:`kernel.keys.Keys.offer` with ``caregiver_id``, ``incident_id``, ``agency_id`` and
``expires_at``, and outlives the offer's window by :data:`KEPT_AFTER_WINDOW_S` (an answer a
little late is judged against it, and refused as late, not as unknown). Postgres holds the
offer itself; a record is only ever a copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kernel.errors import StorageError
from kernel.keys import Keys

KEPT_AFTER_WINDOW_S = 3600


@dataclass(frozen=True, slots=True)
class OfferRecord:
    offer_id: str
    caregiver_id: str
    incident_id: str
    agency_id: str
    expires_at: float


class OfferRecords:
    """Writes and reads the offer records of one namespace; Redis errors become
    :class:`StorageError`."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis, self._keys = redis, keys

    async def write(self, records: Iterable[OfferRecord], now: float) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for r in records:
                    key = self._keys.offer(r.offer_id)
                    pipe.hset(
                        key,
                        mapping={
                            "caregiver_id": r.caregiver_id,
                            "incident_id": r.incident_id,
                            "agency_id": r.agency_id,
                            "expires_at": r.expires_at,
                        },
                    )
                    pipe.expire(key, int(r.expires_at - now) + KEPT_AFTER_WINDOW_S)
                await pipe.execute()
        except RedisError as exc:
            raise StorageError(f"redis: writing offer records: {exc}") from exc

    async def fields(self, offer_id: str) -> dict[str, str]:
        """The record's fields as text; empty when there is no such offer."""
        try:
            raw = await self._redis.hgetall(self._keys.offer(offer_id))
        except RedisError as exc:
            raise StorageError(f"redis: reading offer {offer_id}: {exc}") from exc
        return {_text(k): _text(v) for k, v in raw.items()}

    async def unrecorded(self, offer_ids: list[str]) -> set[str]:
        """Those of ``offer_ids`` with no record: never delivered."""
        if not offer_ids:
            return set()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for offer_id in offer_ids:
                    pipe.exists(self._keys.offer(offer_id))
                recorded = await pipe.execute()
        except RedisError as exc:
            raise StorageError(f"redis: looking up offer records: {exc}") from exc
        return {oid for oid, known in zip(offer_ids, recorded, strict=True) if not known}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
