"""Putting back the dispatch and visit state a rebuild finds in Postgres (``careknot rebuild``).

- Offers still ``pending`` and within their window get their ``{ns}:offer:{id}`` record (what
  the gateways check a caregiver's answer against) as the dispatcher wrote it.
- A caregiver at a visit checked in by GPS (``arrived`` or ``in_visit``) has her tracker in
  ``{ns}:visits:trackers`` know she is inside that home: a tracker the visits agent started
  afresh after the loss would never see her leave. What else the tracker holds (her last fix,
  other fences, a dwell under way) is kept. The tracker is replaced only if it is still the one
  read (compare and set), since the agent may write it meanwhile; a manual check-in is left
  alone (she may never have been seen inside).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from typing import Any

import redis.asyncio as aioredis

from adapters.storage.offer_records import OfferRecord, OfferRecords
from adapters.storage.postgres import Database, ts
from geofence.transitions import FenceTracker
from kernel.settings import Settings

log = logging.getLogger(__name__)

ATTEMPTS = 5  # compare-and-set tries per tracker

_PENDING_OFFERS = (
    "SELECT o.id, o.caregiver_id, o.incident_id, i.agency_id, o.expires_at FROM offers o"
    " JOIN incidents i ON i.id = o.incident_id WHERE o.state = 'pending' AND o.expires_at > $1"
)
_AT_VISITS = (
    "SELECT caregiver_id, patient_id FROM visits WHERE state IN ('arrived', 'in_visit')"
    " AND check_in->>'source' = 'gps' ORDER BY caregiver_id, patient_id"
)

# KEYS[1]: the trackers hash. ARGV: caregiver, the value read ('' for none), the new value.
_COMPARE_AND_SET = """
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


async def restore_offers(db: Database, redis: aioredis.Redis, settings: Settings) -> int:
    """The record of every offer still pending and within its window; how many."""
    now = time.time()
    rows = await db.pool.fetch(_PENDING_OFFERS, ts(now))
    records = [
        OfferRecord(
            offer_id=str(r["id"]),
            caregiver_id=r["caregiver_id"],
            incident_id=str(r["incident_id"]),
            agency_id=r["agency_id"],
            expires_at=r["expires_at"].timestamp(),
        )
        for r in rows
    ]
    await OfferRecords(redis, settings.keys).write(records, now)
    return len(records)


async def restore_trackers(db: Database, redis: aioredis.Redis, settings: Settings) -> int:
    """Trackers of caregivers at visits checked in by GPS told the homes they are in; how many
    trackers changed."""
    homes: dict[str, list[str]] = defaultdict(list)
    for r in await db.pool.fetch(_AT_VISITS):
        homes[r["caregiver_id"]].append(r["patient_id"])
    key = settings.keys.visit_trackers()
    swap = redis.register_script(_COMPARE_AND_SET)
    changed = 0
    for caregiver_id, patients in homes.items():
        for _ in range(ATTEMPTS):
            raw = await redis.hget(key, caregiver_id)
            read = raw.decode() if isinstance(raw, bytes) else (raw or "")
            merged = inside_homes(caregiver_id, read, patients)
            if merged is None:
                break
            if await swap(keys=[key], args=[caregiver_id, read, merged]):
                changed += 1
                break
        else:
            log.warning("tracker of %s kept changing; left as it is", caregiver_id)
    return changed


def inside_homes(caregiver_id: str, stored: str, homes: list[str]) -> str | None:
    """The stored tracker (a new one if none or unreadable) inside each of ``homes`` it does not
    know yet, as JSON; None if it knows them all."""
    state: dict[str, Any] = FenceTracker(caregiver_id).to_dict()
    if stored:
        try:
            state = FenceTracker.from_dict(json.loads(stored)).to_dict()
        except ValueError:
            log.warning("tracker state of %s unreadable: starting afresh", caregiver_id)
    fences = state["fences"]
    new = [h for h in homes if h not in fences]
    if not new:
        return None
    fences.update({h: [True, None] for h in new})
    return json.dumps(state)
