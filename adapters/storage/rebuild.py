"""Rebuilding the live picture in Redis from the record in Postgres (``careknot rebuild``).

Redis holds only what can be rebuilt, and may lose any part of it (a flush, a restart without
persistence, eviction) while fixes keep flowing. The rebuild runs beside the live stream:

1. Each caregiver's latest live fix (``fixes`` rows with ``live``: late and duplicate fixes
   never moved the position) is applied again through :meth:`LiveIndex.update`, the worker's
   own script, so a newer position the worker wrote meanwhile is never overwritten.
2. Caregivers assigned to an incident still ``assigned`` are marked busy.
3. Cell membership is made to match the positions: each caregiver hash gets its entry in the
   street and area hashes of its own cell, and every cell loses the members whose hash says
   another cell (or is gone). A partial loss leaves such strays: a hash lost while its cells
   survived makes the worker's next fix add her to a new cell without leaving the old one.
4. Whoever is ``busy`` in Redis but no longer assigned in Postgres (read again, after the busy
   statuses were read) is made available.
5. Offers still pending and within their window get their ``{ns}:offer:{id}`` record back, so
   the gateways accept their answers.
6. A caregiver at a visit checked in by GPS (``arrived`` or ``in_visit``) has her tracker in
   ``{ns}:visits:trackers`` know she is inside that home, so her leaving checks the visit out
   (``adapters.storage.restore``).

Each step on Redis is a server-side script per batch (atomic against the worker's own), or
writes what a concurrent writer would write too. Running it twice changes nothing. Two windows
are left, each a few milliseconds wide: a fix whose Redis write was lost while its history row
was not yet committed when the rebuild read leaves her one fix behind until her next one; a
caregiver freed and assigned again while the rebuild runs may be left available until a second
run.

Not rebuilt: the rest of the trackers' state (dwell evidence over the last fixes: a caregiver
arriving or leaving when Redis was lost starts her dwell again with her next fix), the
outboxes (messages in flight to WebSocket clients, and their ``seq`` counters, which start
again: a client resumes from what the stream holds) and the worker's heartbeat.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from adapters.storage.live import AVAILABLE, BUSY, LiveIndex
from adapters.storage.postgres import Database
from adapters.storage.restore import restore_offers, restore_trackers
from kernel.contracts import FixEvent
from kernel.keys import CellLevel
from kernel.settings import Settings

log = logging.getLogger(__name__)

BATCH = 5000  # fixes per script call: one call holds Redis, so keep each one short
KEYS_BATCH = 500  # keys per membership script call

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
    index (none on a second run), caregivers assigned (marked busy), cell memberships put
    right (added or removed), and caregivers made available again."""

    positions: int
    moved: int
    busy: int
    memberships: int = 0
    freed: int = 0
    offers: int = 0
    trackers: int = 0


async def latest_fixes(db: Database) -> list[FixEvent]:
    """Every caregiver's latest live fix, in one query."""
    rows = await db.pool.fetch(_LATEST_LIVE)
    return [
        FixEvent(
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


class Memberships:
    """Cell membership of one namespace made to match the caregivers' positions."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis, self._keys = redis, settings.keys
        self._live = LiveIndex(redis, settings)

    async def join_own_cells(self) -> tuple[int, set[str]]:
        """Memberships added, and the caregivers whose status is busy."""
        added, busy = 0, set()
        prefix = self._keys.caregiver_prefix()
        async for keys in self._scan(prefix):
            ids = [k.removeprefix(prefix) for k in keys]
            n, ids_busy = await self._live.join_own_cells(ids)
            added += n
            busy |= ids_busy
        return added, busy

    async def leave_other_cells(self) -> int:
        """Memberships removed."""
        removed = 0
        levels: tuple[CellLevel, ...] = ("street", "area")
        for level in levels:
            prefix = self._keys.cell_prefix(level)
            async for keys in self._scan(prefix):
                cells = [tuple(key.removeprefix(prefix).rsplit(":", 1)) for key in keys]
                removed += await self._live.leave_other_cells(level, cells)
        return removed

    async def _scan(self, prefix: str) -> AsyncIterator[list[str]]:
        """The keys that start with ``prefix``, a batch at a time."""
        batch: list[str] = []
        async for key in self._redis.scan_iter(match=f"{prefix}*", count=KEYS_BATCH):
            batch.append(key.decode() if isinstance(key, bytes) else str(key))
            if len(batch) == KEYS_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch


async def rebuild(db: Database, redis: aioredis.Redis, settings: Settings) -> Rebuilt:
    """Positions, statuses, cell membership, pending offers and trackers at visits of the
    namespace, from Postgres, beside the live stream."""
    live, cells = LiveIndex(redis, settings), Memberships(redis, settings)
    fixes = await latest_fixes(db)
    moved = 0
    for start in range(0, len(fixes), BATCH):
        moved += len(await live.update(fixes[start : start + BATCH]))
    assigned = await busy_caregivers(db)
    await _set_status(live, assigned, BUSY)
    added, busy = await cells.join_own_cells()
    removed = await cells.leave_other_cells()
    freed = sorted(busy - set(await busy_caregivers(db)))
    await _set_status(live, freed, AVAILABLE)
    offers = await restore_offers(db, redis, settings)
    trackers = await restore_trackers(db, redis, settings)
    return Rebuilt(len(fixes), moved, len(assigned), added + removed, len(freed), offers, trackers)


async def _set_status(live: LiveIndex, caregiver_ids: Sequence[str], status: str) -> None:
    for caregiver_id in caregiver_ids:
        await live.set_status(caregiver_id, status)
