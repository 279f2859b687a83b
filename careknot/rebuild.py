"""Rebuilding the live picture in Redis from the record in Postgres (``careknot rebuild``).

Redis holds only what can be rebuilt. After it loses its data, each caregiver's latest live
fix (``fixes`` rows with ``live``: late and duplicate fixes never moved the position) is
applied again through :meth:`LiveIndex.update`, the same script the worker uses, so cell
membership comes back with the position and a newer fix the worker wrote meanwhile is never
overwritten. Caregivers assigned to an incident still ``assigned`` are marked busy again.
Running it twice changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from careknot.contracts import Fix
from careknot.settings import Settings
from careknot.storage.live import BUSY, LiveIndex
from careknot.storage.postgres import Database

log = logging.getLogger(__name__)

BATCH = 5000  # fixes per script call: one call holds Redis, so keep each one short

_LATEST_LIVE = (
    "SELECT DISTINCT ON (caregiver_id) caregiver_id, agency_id, ts, lat, lon, acc, vel, batt,"
    " received_at FROM fixes WHERE live ORDER BY caregiver_id, ts DESC"
)
_ASSIGNED = (
    "SELECT DISTINCT assignee_id FROM incidents"
    " WHERE state = 'assigned' AND assignee_id IS NOT NULL ORDER BY assignee_id"
)


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """What a rebuild did: positions read from Postgres, how many of them moved the live
    index (none on a second run), and caregivers marked busy."""

    positions: int
    moved: int
    busy: int


async def latest_fixes(db: Database) -> list[Fix]:
    """Every caregiver's latest live fix, in one query."""
    rows = await db.pool.fetch(_LATEST_LIVE)
    return [
        Fix(
            event_id=f"rebuild:{r['caregiver_id']}:{r['ts'].timestamp()}",
            agency_id=r["agency_id"],
            caregiver_id=r["caregiver_id"],
            lat=r["lat"],
            lon=r["lon"],
            ts=r["ts"].timestamp(),
            acc=r["acc"],
            vel=r["vel"],
            batt=r["batt"],
            received_at=r["received_at"].timestamp(),
        )
        for r in rows
    ]


async def busy_caregivers(db: Database) -> list[str]:
    """Caregivers assigned to an incident that is still ``assigned``."""
    return [r["assignee_id"] for r in await db.pool.fetch(_ASSIGNED)]


async def rebuild(db: Database, live: LiveIndex) -> Rebuilt:
    """Apply the latest live fixes again and restore busy statuses."""
    fixes = await latest_fixes(db)
    moved = 0
    for start in range(0, len(fixes), BATCH):
        moved += len(await live.update(fixes[start : start + BATCH]))
    busy = await busy_caregivers(db)
    await _mark_busy(live, busy)
    return Rebuilt(positions=len(fixes), moved=moved, busy=len(busy))


async def _mark_busy(live: LiveIndex, caregiver_ids: Sequence[str]) -> None:
    for caregiver_id in caregiver_ids:
        await live.set_status(caregiver_id, BUSY)


async def run(settings: Settings) -> int:
    """``careknot rebuild``: rebuild the namespace's live picture and say what it did."""
    redis: aioredis.Redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        async with Database(settings, max_size=2) as db:
            done = await rebuild(db, LiveIndex(redis, settings))
    finally:
        await redis.aclose()
    log.info("rebuilt %s: %s", settings.namespace, done)
    print(
        f"namespace {settings.namespace}: {done.positions} positions read,"
        f" {done.moved} applied, {done.busy} caregivers busy"
    )
    return 0
