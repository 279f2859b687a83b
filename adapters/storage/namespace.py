"""A namespace's whole footprint on the servers: its Postgres schema and its Redis keys.

The benchmarks and the tests each work in a namespace of their own; they drop it when done, so
runs do not pile up in Redis's memory and Postgres's disk.
"""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis

from kernel.settings import Settings

DELETE_BATCH = 5000


async def drop_namespace(settings: Settings) -> None:
    """Drop the namespace's schema (and everything in it) and delete its Redis keys."""
    conn = await asyncpg.connect(settings.postgres_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.namespace}" CASCADE')
    finally:
        await conn.close()
    redis = aioredis.from_url(settings.redis_url)
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=settings.keys.everything(), count=DELETE_BATCH):
            batch.append(key)
            if len(batch) >= DELETE_BATCH:
                await redis.delete(*batch)
                batch.clear()
        if batch:
            await redis.delete(*batch)
    finally:
        await redis.aclose()
