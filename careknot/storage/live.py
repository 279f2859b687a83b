"""Redis live index: every caregiver's latest accepted position, indexed by H3 cell.

Keys (``ns`` is the namespace):
- ``{ns}:cg:{caregiver}`` hash: agency, lat, lon, ts, cell, area, acc, batt, seen (when ingest
  received the fix), status (available, busy or offline)
- ``{ns}:street:{agency}:{cell}`` set of caregiver ids whose latest fix lies in that res-8 cell
- ``{ns}:area:{agency}:{cell}`` the same at res 6, for searches further out

A batch of fixes moves in one server-side script call: cell membership moves atomically with the
position, and a fix older than the stored one never overwrites it. Everything here can be rebuilt
from the fixes on Kafka and the record in Postgres.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

import h3
import orjson
import redis.asyncio as aioredis

from careknot.contracts import Fix
from careknot.settings import Settings
from dispatch.model import Candidate
from dispatch.ranking import AREA_RESOLUTION, STREET_RESOLUTION, SearchStep
from geofence.geodesy import haversine_m
from geofence.quality import AcceptedFix

AVAILABLE = "available"
BUSY = "busy"
OFFLINE = "offline"

# ARGV: ns, then the fixes as one JSON array of [id, agency, lat, lon, ts, cell, area, acc, batt,
# seen] (seen: when ingest received the fix). All strings: one argument packs and parses far
# faster than ten per fix, and the strings are stored as they are. A fix applied to an offline
# caregiver makes her available (her phone is back). Returns id, status of each caregiver whose
# position moved, flat.
_UPDATE_POSITIONS = """
local ns = ARGV[1]
local applied = {}
local function move(level, old_agency, old_cell, agency, cell, id)
  if old_cell and (old_cell ~= cell or old_agency ~= agency) then
    redis.call('SREM', ns .. ':' .. level .. ':' .. old_agency .. ':' .. old_cell, id)
  end
  redis.call('SADD', ns .. ':' .. level .. ':' .. agency .. ':' .. cell, id)
end
for _, f in ipairs(cjson.decode(ARGV[2])) do
  local id, agency, lat, lon, t, cell, area, acc, batt, seen = unpack(f)
  local key = ns .. ':cg:' .. id
  local prev = redis.call('HMGET', key, 'ts', 'cell', 'area', 'agency')
  if (not prev[1]) or tonumber(prev[1]) < tonumber(t) then
    move('street', prev[4], prev[2], agency, cell, id)
    move('area', prev[4], prev[3], agency, area, id)
    redis.call('HSET', key, 'agency', agency, 'lat', lat, 'lon', lon, 'ts', t,
               'cell', cell, 'area', area, 'acc', acc, 'batt', batt, 'seen', seen)
    local status = redis.call('HGET', key, 'status') or 'available'
    if status == 'offline' then  -- her phone is back
      status = 'available'
      redis.call('HSET', key, 'status', status)
    end
    applied[#applied + 1] = id
    applied[#applied + 1] = status
  end
end
return applied
"""

# ARGV: ns, caregiver id, at. An available caregiver whose last fix reached ingest no later than
# ``at`` goes offline (a fix after the notice means her phone is back). Returns 1 if she did.
_MARK_OFFLINE = """
local key = ARGV[1] .. ':cg:' .. ARGV[2]
local v = redis.call('HMGET', key, 'ts', 'status', 'seen')
if not v[1] or (v[2] and v[2] ~= 'available') then return 0 end
if v[3] and tonumber(v[3]) > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', key, 'status', 'offline')
return 1
"""

# ARGV: ns, the caregiver ids as one JSON array. Returns lat, lon, ts, acc of each, flat (false
# where missing).
_LAST_FIXES = """
local out = {}
for _, id in ipairs(cjson.decode(ARGV[2])) do
  local v = redis.call('HMGET', ARGV[1] .. ':cg:' .. id, 'lat', 'lon', 'ts', 'acc')
  for j = 1, 4 do out[#out + 1] = v[j] end
end
return out
"""

# The nearest ``need`` fresh, available caregivers of an agency around a home, in one call.
# ARGV: ns, agency, need, now, stale_after_s, lat, lon, then per step three: level, its cells
# (space-separated) and, for cells that may be skipped, "lat lon reach" of each (space-separated;
# empty for none): the cell's centre and a radius around it holding the whole cell. Steps are
# read in order until ``need`` are kept, then one step more (cells are not circles); once
# ``need`` are kept, a cell wholly farther than the need-th is not read.
# Returns id, lat, lon, ts, status per caregiver, nearest first (ties by id).
_SEARCH = """
local ns, agency, need = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now, stale = tonumber(ARGV[4]), tonumber(ARGV[5])
local R, rad = 6371008.8, math.pi / 180
local function unit(lat, lon)
  local p, l = lat * rad, lon * rad
  return math.cos(p) * math.cos(l), math.cos(p) * math.sin(l), math.sin(p)
end
local hx, hy, hz = unit(tonumber(ARGV[6]), tonumber(ARGV[7]))
local function dist(lat, lon)
  local x, y, z = unit(lat, lon)
  local dx, dy, dz = x - hx, y - hy, z - hz
  return 2 * R * math.asin(math.min(1, math.sqrt((dx * dx + dy * dy + dz * dz) / 4)))
end
local function closer(a, b) return a.d < b.d or (a.d == b.d and a.id < b.id) end
local function words(s)
  local t = {}
  for w in string.gmatch(s, '%S+') do t[#t + 1] = w end
  return t
end
local kept, seen, bound = {}, {}, math.huge
local stop_after, step, cg = nil, 0, ns .. ':cg:'
local function wanted(geo, c)
  if not geo[3 * c] then return true end
  return dist(tonumber(geo[3 * c - 2]), tonumber(geo[3 * c - 1])) - tonumber(geo[3 * c]) <= bound
end
for i = 8, #ARGV, 3 do
  step = step + 1
  local cells = words(ARGV[i + 1])
  local geo = bound < math.huge and words(ARGV[i + 2]) or {}  -- no cell is skipped before
  local prefix = ns .. ':' .. ARGV[i] .. ':' .. agency .. ':'
  for c = 1, #cells do
    if wanted(geo, c) then
      local members = redis.call('SMEMBERS', prefix .. cells[c])
      for _, id in ipairs(members) do
        if not seen[id] then
          seen[id] = true
          local v = redis.call('HMGET', cg .. id, 'lat', 'lon', 'ts', 'status', 'agency')
          local status = v[4] or 'available'
          local fresh = v[3] and now - tonumber(v[3]) <= stale
          if v[1] and fresh and v[5] == agency and status == 'available' then
            kept[#kept + 1] = {id = id, d = dist(tonumber(v[1]), tonumber(v[2])),
                               lat = v[1], lon = v[2], ts = v[3], status = status}
          end
        end
      end
    end
  end
  if #kept >= need then
    table.sort(kept, closer)
    for j = #kept, need + 1, -1 do kept[j] = nil end
    bound = kept[need].d
    stop_after = stop_after or step
  end
  if stop_after and step > stop_after then break end
end
table.sort(kept, closer)
local out = {}
for j = 1, math.min(need, #kept) do
  local k = kept[j]
  out[#out + 1] = k.id; out[#out + 1] = k.lat; out[#out + 1] = k.lon
  out[#out + 1] = k.ts; out[#out + 1] = k.status
end
return out
"""

_FIELDS = ("lat", "lon", "ts", "status", "agency")
_LAST_FIX_FIELDS = ("lat", "lon", "ts", "acc")


def cell_of(lat: float, lon: float) -> str:
    """The street-level H3 cell of a position."""
    return str(h3.latlng_to_cell(lat, lon, STREET_RESOLUTION))


@lru_cache(maxsize=65_536)
def area_of(cell: str) -> str:
    return str(h3.cell_to_parent(cell, AREA_RESOLUTION))


def _update_row(f: Fix) -> list[str]:
    """A fix as the update script reads it; numbers as ``repr`` gives them, as stored."""
    cell = cell_of(f.lat, f.lon)
    acc = "" if f.acc is None else repr(f.acc)
    batt = "" if f.batt is None else str(f.batt)
    position = [repr(f.lat), repr(f.lon), repr(f.ts)]
    return [
        f.caregiver_id,
        f.agency_id,
        *position,
        cell,
        area_of(cell),
        acc,
        batt,
        repr(f.received_at),
    ]


@lru_cache(maxsize=65_536)
def _reach(cell: str) -> str:
    """An H3 cell's centre and a radius around it holding the whole cell: "lat lon metres"."""
    lat, lon = h3.cell_to_latlng(cell)
    far = max(haversine_m(lat, lon, a, b) for a, b in h3.cell_to_boundary(cell))
    return f"{lat!r} {lon!r} {far * 1.01 + 1.0:.1f}"


class LiveIndex:
    """Reads and writes the live positions of one namespace."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._ns = settings.namespace
        self._update = redis.register_script(_UPDATE_POSITIONS)
        self._last = redis.register_script(_LAST_FIXES)
        self._offline = redis.register_script(_MARK_OFFLINE)
        self._search = redis.register_script(_SEARCH)

    async def update(self, fixes: Sequence[Fix]) -> dict[str, str]:
        """Apply a batch of accepted fixes in order; a fix older than the stored one is ignored.

        Returns the caregivers whose position moved, with their availability status.
        """
        if not fixes:
            return {}
        rows = [_update_row(f) for f in fixes]
        flat = await self._update(keys=[], args=[self._ns, orjson.dumps(rows)])
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}

    async def mark_offline(self, caregiver_id: str, at: float) -> bool:
        """Her phone went away at ``at`` (epoch s, as ingest received the notice): an available
        caregiver is offline, so no dispatch candidate, until her next fix. Busy stays busy;
        a fix received after ``at`` means she is back. True if she went offline."""
        return bool(await self._offline(keys=[], args=[self._ns, caregiver_id, repr(at)]))

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

    async def search(
        self,
        agency_id: str,
        plan: Iterable[SearchStep],
        *,
        lat: float,
        lon: float,
        need: int,
        now: float,
        stale_after_s: float,
    ) -> list[Candidate]:
        """The nearest ``need`` fresh, available caregivers of the agency around (lat, lon),
        nearest first (ties by id), found by one server-side script call.

        The plan's steps are read in order until ``need`` such caregivers are kept, then one
        step more, as :meth:`nearby` does; an area cell wholly farther than the ``need``-th
        kept is skipped, which changes no answer.
        """
        if need <= 0:
            return []
        args: list[str | float | int] = [self._ns, agency_id, need, now, stale_after_s, lat, lon]
        for step in plan:
            geometry = " ".join(map(_reach, step.cells)) if step.level == "area" else ""
            args += [step.level, " ".join(step.cells), geometry]
        flat = await self._search(keys=[], args=args)
        return [
            Candidate(
                caregiver_id=flat[i].decode(),
                agency_id=agency_id,
                lat=float(flat[i + 1]),
                lon=float(flat[i + 2]),
                ts=float(flat[i + 3]),
                status=flat[i + 4].decode(),
            )
            for i in range(0, len(flat), 5)
        ]

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
        flat = await self._last(keys=[], args=[self._ns, orjson.dumps(ids)])
        out = {}
        for n, cid in enumerate(ids):
            lat, lon, t, acc = flat[4 * n : 4 * n + 4]
            if lat is not None and t is not None:
                out[cid] = AcceptedFix(
                    float(lat), float(lon), float(t), float(acc) if acc else None
                )
        return out
