"""Redis live index: every caregiver's latest accepted position, indexed by H3 cell.

Keys (``ns`` is the namespace):
- ``{ns}:cg:{caregiver}`` hash: agency, lat, lon, ts, cell, area, acc, batt, status
- ``{ns}:street:{agency}:{cell}`` set of caregiver ids whose latest fix lies in that res-8 cell
- ``{ns}:area:{agency}:{cell}`` the same at res 6, for searches further out

A batch of fixes moves in one server-side script call: cell membership moves atomically with the
position, and a fix older than the stored one never overwrites it. Everything here can be rebuilt
from the fixes on Kafka and the record in Postgres.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import h3
import redis.asyncio as aioredis

from careknot.contracts import Fix
from careknot.settings import Settings
from dispatch.model import Candidate
from dispatch.ranking import AREA_RESOLUTION, STREET_RESOLUTION, SearchStep
from geofence.quality import AcceptedFix

AVAILABLE = "available"
BUSY = "busy"

_UPDATE_POSITIONS = """
local ns = ARGV[1]
local applied = {}
local function move(level, old_agency, old_cell, agency, cell, id)
  if old_cell and (old_cell ~= cell or old_agency ~= agency) then
    redis.call('SREM', ns .. ':' .. level .. ':' .. old_agency .. ':' .. old_cell, id)
  end
  redis.call('SADD', ns .. ':' .. level .. ':' .. agency .. ':' .. cell, id)
end
for i = 2, #ARGV, 9 do
  local id, agency, lat, lon = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local t, cell, area, acc, batt = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
  local key = ns .. ':cg:' .. id
  local prev = redis.call('HMGET', key, 'ts', 'cell', 'area', 'agency')
  if (not prev[1]) or tonumber(prev[1]) < tonumber(t) then
    move('street', prev[4], prev[2], agency, cell, id)
    move('area', prev[4], prev[3], agency, area, id)
    redis.call('HSET', key, 'agency', agency, 'lat', lat, 'lon', lon, 'ts', t,
               'cell', cell, 'area', area, 'acc', acc, 'batt', batt)
    applied[#applied + 1] = id
    applied[#applied + 1] = redis.call('HGET', key, 'status') or 'available'
  end
end
return applied
"""

# ARGV: ns, caregiver ids. Returns lat, lon, ts, acc of each, flat (false where missing).
_LAST_FIXES = """
local out = {}
for i = 2, #ARGV do
  local v = redis.call('HMGET', ARGV[1] .. ':cg:' .. ARGV[i], 'lat', 'lon', 'ts', 'acc')
  for j = 1, 4 do out[#out + 1] = v[j] end
end
return out
"""

_FIELDS = ("lat", "lon", "ts", "status", "agency")
_LAST_FIX_FIELDS = ("lat", "lon", "ts", "acc")


def cell_of(lat: float, lon: float) -> str:
    """The street-level H3 cell of a position."""
    return str(h3.latlng_to_cell(lat, lon, STREET_RESOLUTION))


def area_of(cell: str) -> str:
    return str(h3.cell_to_parent(cell, AREA_RESOLUTION))


class LiveIndex:
    """Reads and writes the live positions of one namespace."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._ns = settings.namespace
        self._update = redis.register_script(_UPDATE_POSITIONS)
        self._last = redis.register_script(_LAST_FIXES)

    async def update(self, fixes: Sequence[Fix]) -> dict[str, str]:
        """Apply a batch of accepted fixes in order; a fix older than the stored one is ignored.

        Returns the caregivers whose position moved, with their availability status.
        """
        if not fixes:
            return {}
        args: list[str | float | int] = [self._ns]
        for f in fixes:
            cell = cell_of(f.lat, f.lon)
            args += [f.caregiver_id, f.agency_id, f.lat, f.lon, f.ts, cell, area_of(cell)]
            args += ["" if f.acc is None else f.acc, "" if f.batt is None else f.batt]
        flat = await self._update(keys=[], args=args)
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    async def set_status(self, caregiver_id: str, status: str) -> None:
        await self._redis.hset(f"{self._ns}:cg:{caregiver_id}", "status", status)

    async def nearby(self, agency_id: str, plan: Iterable[SearchStep], need: int) -> list[str]:
        """Caregiver ids of the agency found by following ``plan`` until ``need`` are found.

        One step more than the one that reached ``need`` is read, since cells are not
        circles: someone just outside the first disk can be closer than someone inside it.
        """
        found: dict[str, None] = {}
        stop_after: int | None = None
        for n, step in enumerate(plan):
            async with self._redis.pipeline(transaction=False) as pipe:
                for cell in step.cells:
                    pipe.smembers(f"{self._ns}:{step.level}:{agency_id}:{cell}")
                members = await pipe.execute()
            found.update(dict.fromkeys(sorted(m.decode() for group in members for m in group)))
            if stop_after is None and len(found) >= need:
                stop_after = n + 1
            if stop_after is not None and n >= stop_after:
                break
        return list(found)

    async def candidates(self, caregiver_ids: Sequence[str]) -> list[Candidate]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid in caregiver_ids:
                pipe.hmget(f"{self._ns}:cg:{cid}", _FIELDS)
            rows = await pipe.execute()
        out = []
        for cid, (lat, lon, t, status, agency) in zip(caregiver_ids, rows, strict=True):
            if lat is None or agency is None:
                continue
            out.append(
                Candidate(
                    caregiver_id=cid,
                    agency_id=agency.decode(),
                    lat=float(lat),
                    lon=float(lon),
                    ts=float(t),
                    status=status.decode() if status else AVAILABLE,
                )
            )
        return out

    async def last_fixes(self, caregiver_ids: Iterable[str]) -> dict[str, AcceptedFix]:
        """The last accepted fix of each caregiver who has one (what the quality filters need),
        read in one script call for the whole batch."""
        ids = list(dict.fromkeys(caregiver_ids))
        if not ids:
            return {}
        flat = await self._last(keys=[], args=[self._ns, *ids])
        out = {}
        for n, cid in enumerate(ids):
            lat, lon, t, acc = flat[4 * n : 4 * n + 4]
            if lat is not None and t is not None:
                out[cid] = AcceptedFix(
                    float(lat), float(lon), float(t), float(acc) if acc else None
                )
        return out
