"""Redis live index: every caregiver's latest accepted position, indexed by H3 cell.

Keys (``ns`` is the namespace):
- ``{ns}:cg:{caregiver}`` hash: agency, lat, lon, ts, cell, acc, batt, status
- ``{ns}:cell:{agency}:{cell}`` set of caregiver ids whose latest fix lies in that res-8 cell

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

INDEX_RESOLUTION = 8
AVAILABLE = "available"
BUSY = "busy"

_UPDATE_POSITIONS = """
local ns = ARGV[1]
local applied = {}
for i = 2, #ARGV, 8 do
  local id, agency, lat, lon = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local t, cell, acc, batt = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local key = ns .. ':cg:' .. id
  local prev = redis.call('HMGET', key, 'ts', 'cell', 'agency')
  if (not prev[1]) or tonumber(prev[1]) < tonumber(t) then
    if prev[2] and (prev[2] ~= cell or prev[3] ~= agency) then
      redis.call('SREM', ns .. ':cell:' .. prev[3] .. ':' .. prev[2], id)
    end
    redis.call('SADD', ns .. ':cell:' .. agency .. ':' .. cell, id)
    redis.call('HSET', key, 'agency', agency, 'lat', lat, 'lon', lon, 'ts', t,
               'cell', cell, 'acc', acc, 'batt', batt)
    applied[#applied + 1] = id
    applied[#applied + 1] = redis.call('HGET', key, 'status') or 'available'
  end
end
return applied
"""

_FIELDS = ("lat", "lon", "ts", "status", "agency")


def cell_of(lat: float, lon: float) -> str:
    return str(h3.latlng_to_cell(lat, lon, INDEX_RESOLUTION))


class LiveIndex:
    """Reads and writes the live positions of one namespace."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._ns = settings.namespace
        self._update = redis.register_script(_UPDATE_POSITIONS)

    async def update(self, fixes: Sequence[Fix]) -> dict[str, str]:
        """Apply a batch of accepted fixes in order; a fix older than the stored one is ignored.

        Returns the caregivers whose position moved, with their availability status.
        """
        if not fixes:
            return {}
        args: list[str | float | int] = [self._ns]
        for f in fixes:
            args += [f.caregiver_id, f.agency_id, f.lat, f.lon, f.ts, cell_of(f.lat, f.lon)]
            args += ["" if f.acc is None else f.acc, "" if f.batt is None else f.batt]
        flat = await self._update(keys=[], args=args)
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    async def set_status(self, caregiver_id: str, status: str) -> None:
        await self._redis.hset(f"{self._ns}:cg:{caregiver_id}", "status", status)

    async def nearby(self, agency_id: str, rings: Iterable[Sequence[str]], need: int) -> list[str]:
        """Caregiver ids in the agency's cells, ring by ring, until ``need`` are found.

        One ring more than the one that reached ``need`` is read, since hexagon rings are
        not circles: someone in ring k+1 can be closer than someone in ring k.
        """
        found: list[str] = []
        stop_after: int | None = None
        for k, ring in enumerate(rings):
            async with self._redis.pipeline(transaction=False) as pipe:
                for cell in ring:
                    pipe.smembers(f"{self._ns}:cell:{agency_id}:{cell}")
                members = await pipe.execute()
            found += sorted(m.decode() for group in members for m in group)
            if stop_after is None and len(found) >= need:
                stop_after = k + 1
            if stop_after is not None and k >= stop_after:
                break
        return found

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
