"""``careknot rebuild``: the live picture in Redis rebuilt from the record in Postgres, beside the
live stream (what it puts back, and what not: :mod:`adapters.storage.rebuild`)."""

from __future__ import annotations

import logging

import redis.asyncio as aioredis

from adapters.storage.postgres import Database
from adapters.storage.rebuild import rebuild
from kernel.settings import Settings

log = logging.getLogger(__name__)


async def run(settings: Settings) -> int:
    """``careknot rebuild``: rebuild the namespace's live picture and say what it did."""
    redis: aioredis.Redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        async with Database(settings, max_size=2) as db:
            done = await rebuild(db, redis, settings)
    finally:
        await redis.aclose()
    log.info("rebuilt %s: %s", settings.namespace, done)
    print(
        f"namespace {settings.namespace}: {done.positions} positions read,"
        f" {done.moved} applied, {done.busy} caregivers busy, {done.freed} made available,"
        f" {done.memberships} cell memberships put right, {done.offers} pending offers,"
        f" {done.trackers} visit trackers"
    )
    return 0
