"""Redis live index: every caregiver's latest accepted position, indexed by H3 cell.

Keys (``ns`` is the namespace; :mod:`kernel.keys` names them):
- ``{ns}:cg:{caregiver}`` hash: agency, lat, lon, ts, cell, area, acc, batt, seen (when ingest
  received the fix), status (available, busy or offline)
- ``{ns}:street:{agency}:{cell}`` hash of the caregivers whose latest fix lies in that res-8
  cell: caregiver id → her entry, what a search needs of her (see :data:`ENTRY`), so a cell is
  read in one HGETALL
- ``{ns}:area:{agency}:{cell}`` the same at res 6, for searches further out
- ``{ns}:shapes`` hash: res-6 cell → its shape (see :data:`SHAPE`), written by the first
  update that brings a caregiver there (each process sends a cell's shape once), so a search
  can skip a cell wholly farther than it needs; a cell without one is read

A batch of fixes moves in one server-side script call: cell membership and the entries move
atomically with the caregiver's hash, and a fix older than the stored one never overwrites it;
a status change rewrites her entries in the same script call. Everything here can be rebuilt
from the fixes on Kafka and the record in Postgres.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from functools import lru_cache

import h3
import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dispatch.candidates import area_of, cell_reach
from dispatch.model import Candidate
from dispatch.ranking import STREET_RESOLUTION, SearchStep
from geofence.quality import AcceptedFix
from kernel import keys
from kernel.contracts import FixEvent
from kernel.errors import StorageError
from kernel.settings import Settings

AVAILABLE = "available"
BUSY = "busy"
OFFLINE = "offline"

# A caregiver's entry in her cells: three little-endian doubles, the fix's ts and her lat and
# lon exactly as stored (so answers carry them unrounded), then her status as text.
ENTRY = struct.Struct("<3d")
# An area cell's shape: its centre as a unit vector and a radius in metres around the centre
# holding the whole cell, four little-endian doubles.
SHAPE = struct.Struct("<4d")

UPDATE_CHUNK = 250  # fixes per script call (a few ms of Redis's time at most)

# How long the change log keeps its entries: a follower further behind reads the index anew.
CHANGES_KEPT_S = 10

# Lua: append a change to the namespace's change log ``{ns}:live:changes``, numbered by
# ``{ns}:live:seq`` (one more per change, so a follower sees a gap, a reset or a lost log), and
# drop entries older than CHANGES_KEPT_S. ``...``: the change's fields, after ``seq`` and
# ``kind``: ``fixes`` (the update's rows and ``applied``: "row status" pairs, space-separated,
# rows counted from 0), ``status`` (``id``, ``status``), or ``reset`` (entries changed wholesale:
# read the index anew).
_LOG_CHANGE = (
    keys.LUA
    + f"""
local function log_change(ns, kind, ...)
  local seq = redis.call('INCR', live_seq_key(ns))
  local oldest = (tonumber(redis.call('TIME')[1]) - {CHANGES_KEPT_S}) * 1000
  redis.call('XADD', live_changes_key(ns), 'MINID', '~', oldest, '*', 'seq', seq, 'kind', kind,
             ...)
end
"""
)

# ARGV: ns, the fixes as one JSON array of [id, agency, lat, lon, ts, cell, area, acc, batt, seen]
# (seen: when ingest received the fix; one argument packs and parses far faster than ten per
# fix; numbers as JSON numbers, which Redis stores with 17 significant digits: the same double
# reads back; acc and batt "" when not sent), then area cells and their shapes,
# for the shapes hash where missing. A fix applied to an offline caregiver makes her available
# (her phone is back). Returns id, status of each caregiver whose position moved, flat.
_UPDATE_POSITIONS = (
    _LOG_CHANGE
    + """
local ns = ARGV[1]
local applied, logged = {}, {}
local function entry(lat, lon, t, status)
  return struct.pack('<ddd', tonumber(t), tonumber(lat), tonumber(lon)) .. status
end
local function move(level, old_agency, old_cell, agency, cell, id, e)
  if old_cell and (old_cell ~= cell or old_agency ~= agency) then
    redis.call('HDEL', cell_key(ns, level, old_agency, old_cell), id)
  end
  redis.call('HSET', cell_key(ns, level, agency, cell), id, e)
end
for i, f in ipairs(cjson.decode(ARGV[2])) do
  local id, agency, lat, lon, t, cell, area, acc, batt, seen = unpack(f)
  local key = caregiver_key(ns, id)
  local prev = redis.call('HMGET', key, 'ts', 'cell', 'area', 'agency', 'status')
  if (not prev[1]) or tonumber(prev[1]) < tonumber(t) then
    local status = prev[5] or 'available'
    if status == 'offline' then status = 'available' end  -- her phone is back
    local e = entry(lat, lon, t, status)
    move('street', prev[4], prev[2], agency, cell, id, e)
    move('area', prev[4], prev[3], agency, area, id, e)
    redis.call('HSET', key, 'agency', agency, 'lat', lat, 'lon', lon, 'ts', t, 'cell', cell,
               'area', area, 'acc', acc, 'batt', batt, 'seen', seen, 'status', status)
    applied[#applied + 1] = id
    applied[#applied + 1] = status
    logged[#logged + 1] = (i - 1) .. ' ' .. status
  end
end
for i = 3, #ARGV, 2 do redis.call('HSETNX', shapes_key(ns), ARGV[i], ARGV[i + 1]) end
if #logged > 0 then
  log_change(ns, 'fixes', 'rows', ARGV[2], 'applied', table.concat(logged, ' '))
end
return applied
"""
)

# Lua: rewrite caregiver ``id``'s status in her hash and in her cells' entries (key: her hash).
_REWRITE_STATUS = (
    _LOG_CHANGE
    + """
local function rewrite(ns, id, key, status)
  redis.call('HSET', key, 'status', status)
  local v = redis.call('HMGET', key, 'agency', 'cell', 'area')
  if v[1] and v[2] and v[3] then
    local street = cell_key(ns, 'street', v[1], v[2])
    local area = cell_key(ns, 'area', v[1], v[3])
    local old = redis.call('HGET', street, id)
    if old then
      local e = string.sub(old, 1, 24) .. status
      redis.call('HSET', street, id, e)
      redis.call('HSET', area, id, e)
      log_change(ns, 'status', 'id', id, 'status', status)
    end
  end
end
"""
)

# ARGV: ns, caregiver id, status. Her hash and her cells' entries together.
_SET_STATUS = (
    _REWRITE_STATUS
    + """
rewrite(ARGV[1], ARGV[2], caregiver_key(ARGV[1], ARGV[2]), ARGV[3])
return 1
"""
)

# ARGV: ns, caregiver id, at. An available caregiver whose last fix reached ingest no later than
# ``at`` goes offline (a fix after the notice means her phone is back). Returns 1 if she did.
_MARK_OFFLINE = (
    _REWRITE_STATUS
    + """
local key = caregiver_key(ARGV[1], ARGV[2])
local v = redis.call('HMGET', key, 'ts', 'status', 'seen')
if not v[1] or (v[2] and v[2] ~= 'available') then return 0 end
if v[3] and tonumber(v[3]) > tonumber(ARGV[3]) then return 0 end
rewrite(ARGV[1], ARGV[2], key, 'offline')
return 1
"""
)

# ARGV: ns, caregiver ids. Gives each caregiver with a position her entry in her street and area
# cells (a rebuild: the entry is made from her hash). Returns how many entries were missing, then
# the ids of the busy.
_JOIN_OWN_CELLS = (
    _LOG_CHANGE
    + """
local ns, added, busy = ARGV[1], 0, {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local v = redis.call('HMGET', caregiver_key(ns, id), 'agency', 'cell', 'area', 'status', 'ts',
                       'lat', 'lon')
  if v[1] and v[2] and v[3] and v[5] then
    local e = struct.pack('<ddd', tonumber(v[5]), tonumber(v[6]), tonumber(v[7]))
              .. (v[4] or 'available')
    added = added + redis.call('HSET', cell_key(ns, 'street', v[1], v[2]), id, e)
    added = added + redis.call('HSET', cell_key(ns, 'area', v[1], v[3]), id, e)
  end
  if v[4] == 'busy' then busy[#busy + 1] = id end
end
if added > 0 then log_change(ns, 'reset') end
return {added, busy}
"""
)

# ARGV: ns, level, then per cell two: agency, cell. Removes the entries of caregivers whose hash
# does not place them in that cell of that agency (or is gone). Returns how many were removed.
_LEAVE_OTHER_CELLS = (
    _LOG_CHANGE
    + """
local ns, level, removed = ARGV[1], ARGV[2], 0
local field = level == 'street' and 'cell' or 'area'
for i = 3, #ARGV, 2 do
  local agency, cell = ARGV[i], ARGV[i + 1]
  local key = cell_key(ns, level, agency, cell)
  for _, id in ipairs(redis.call('HKEYS', key)) do
    local v = redis.call('HMGET', caregiver_key(ns, id), field, 'agency')
    if v[1] ~= cell or v[2] ~= agency then
      removed = removed + redis.call('HDEL', key, id)
    end
  end
end
if removed > 0 then log_change(ns, 'reset') end
return removed
"""
)

# ARGV: ns, the caregiver ids as one JSON array. Returns lat, lon, ts, acc of each, flat (false
# where missing).
_LAST_FIXES = (
    keys.LUA
    + """
local out = {}
for _, id in ipairs(cjson.decode(ARGV[2])) do
  local v = redis.call('HMGET', caregiver_key(ARGV[1], id), 'lat', 'lon', 'ts', 'acc')
  for j = 1, 4 do out[#out + 1] = v[j] end
end
return out
"""
)

# The nearest ``need`` fresh, available caregivers of an agency around a home, in one call.
# ARGV: ns, agency, need, now, stale_after_s, lat, lon, then per step two: level and its cells
# (space-separated).
#
# The answer is that of reading the steps in order until ``need`` are kept, then one step more
# (cells are not circles), and keeping the nearest ``need`` of all read. It is found with fewer
# reads: a step is read whole only while the count it gives decides how far the plan goes;
# in the steps left within reach, once ``need`` are kept, an area cell wholly farther than the
# need-th (by its shape) is not read. A cell is one HGETALL of entries.
# Returns id, entry per caregiver, nearest first (ties by id).
_SEARCH = (
    keys.LUA
    + """
local ns, agency, need = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now, stale = tonumber(ARGV[4]), tonumber(ARGV[5])
local sqrt, asin, min, decode, sub = math.sqrt, math.asin, math.min, struct.unpack, string.sub
local rad = math.pi / 180
local hlat, hlon = tonumber(ARGV[6]) * rad, tonumber(ARGV[7]) * rad
local hx, hy, hz = math.cos(hlat) * math.cos(hlon), math.cos(hlat) * math.sin(hlon), math.sin(hlat)
local function metres(x, y, z)
  local dx, dy, dz = x - hx, y - hy, z - hz
  return 2 * 6371008.8 * asin(min(1, sqrt((dx * dx + dy * dy + dz * dz) / 4)))
end
local function metres_to(lat, lon)
  local p, l = lat * rad, lon * rad
  return metres(math.cos(p) * math.cos(l), math.cos(p) * math.sin(l), math.sin(p))
end
-- no point is nearer than its difference in latitude (plus a millimetre for rounding)
local function beyond(lat, d) return 6371008.8 * math.abs(lat * rad - hlat) > d + 0.001 end
-- the nearest kept so far, nearest first (ties by id), at most need, as three arrays; count:
-- all fresh and available seen; bound: the need-th's distance once need are kept
local ids, ds, es, n, count, bound = {}, {}, {}, 0, 0, math.huge
local floor, insert = math.floor, table.insert
local function keep(id, d, e)
  if n == need and (d > bound or (d == bound and id > ids[n])) then return end
  local lo, hi = 1, n + 1
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if d < ds[mid] or (d == ds[mid] and id < ids[mid]) then hi = mid else lo = mid + 1 end
  end
  insert(ids, lo, id); insert(ds, lo, d); insert(es, lo, e)
  if n == need then ids[n + 1], ds[n + 1], es[n + 1] = nil, nil, nil else n = n + 1 end
  if n == need then bound = ds[n] end
end
local seen = {}
local function read(key)
  local h = redis.call('HGETALL', key)
  for j = 1, #h, 2 do
    local id = h[j]
    if not seen[id] then
      seen[id] = true
      local e = h[j + 1]
      local ts, lat, lon = decode('<ddd', e)
      if now - ts <= stale and sub(e, 25) == 'available' then
        count = count + 1
        if n < need or not beyond(lat, bound) then keep(id, metres_to(lat, lon), e) end
      end
    end
  end
end
local function far(shape)
  if not shape then return false end
  local x, y, z, reach = decode('<dddd', shape)
  return metres(x, y, z) - reach > bound
end
local function cells_of(s)
  local cells = {}
  for cell in string.gmatch(ARGV[7 + 2 * s], '%S+') do cells[#cells + 1] = cell end
  return cells
end
local function prefix_of(s) return cell_key(ns, ARGV[6 + 2 * s], agency, '') end
local steps = (#ARGV - 7) / 2
-- whole steps, while the count they give decides how far the plan goes
local done = 0
while done < steps - 2 and count < need do
  done = done + 1
  local prefix = prefix_of(done)
  for cell in string.gmatch(ARGV[7 + 2 * done], '%S+') do read(prefix .. cell) end
end
local last = count >= need and min(done + 1, steps) or steps
-- the steps within reach, cell by cell
for s = done + 1, last do
  local prefix, cells, shapes = prefix_of(s), cells_of(s), nil
  for c, cell in ipairs(cells) do
    if bound < math.huge and not shapes and ARGV[6 + 2 * s] == 'area' then
      shapes = redis.call('HMGET', shapes_key(ns), unpack(cells))
    end
    if not (shapes and far(shapes[c])) then read(prefix .. cell) end
  end
end
local out = {}
for j = 1, n do out[#out + 1] = ids[j]; out[#out + 1] = es[j] end
return out
"""
)

_FIELDS = ("lat", "lon", "ts", "status", "agency")
_LAST_FIX_FIELDS = ("lat", "lon", "ts", "acc")


@lru_cache(maxsize=8192)
def cell_of(lat: float, lon: float) -> str:
    """The street-level H3 cell of a position (kept for the latest positions: the location
    frame of a fix asks again for the cell its update row just had)."""
    return str(h3.latlng_to_cell(lat, lon, STREET_RESOLUTION))


def _update_row(f: FixEvent) -> list[str | float | int]:
    """A fix as the update script reads it: numbers as JSON numbers (Redis stores what a
    script passes as a number with 17 significant digits, so it reads back the same double),
    and ``""`` for an accuracy or a battery the phone did not send."""
    cell = cell_of(f.lat, f.lon)
    acc: float | str = "" if f.acc is None else f.acc
    batt: int | str = "" if f.batt is None else f.batt
    return [
        f.caregiver_id, f.agency_id, f.lat, f.lon, f.ts, cell, area_of(cell), acc, batt,
        f.received_at,
    ]  # fmt: skip


@lru_cache(maxsize=65_536)
def shape(cell: str) -> bytes:
    """An H3 cell's :data:`SHAPE` (see :func:`dispatch.candidates.cell_reach`)."""
    return SHAPE.pack(*cell_reach(cell))


def _candidate(caregiver_id: bytes, entry: bytes, agency_id: str) -> Candidate:
    ts, lat, lon = ENTRY.unpack_from(entry)
    status = entry[ENTRY.size :].decode()
    return Candidate(caregiver_id.decode(), agency_id, lat, lon, ts, status)


class LiveIndex:
    """Reads and writes the live positions of one namespace."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._ns = settings.namespace
        self._keys = settings.keys
        self._update = redis.register_script(_UPDATE_POSITIONS)
        self._last = redis.register_script(_LAST_FIXES)
        self._offline = redis.register_script(_MARK_OFFLINE)
        self._search = redis.register_script(_SEARCH)
        self._status = redis.register_script(_SET_STATUS)
        self._join = redis.register_script(_JOIN_OWN_CELLS)
        self._leave = redis.register_script(_LEAVE_OTHER_CELLS)
        self._shapes_sent: set[str] = set()  # area cells whose shape this process has written

    async def update(self, fixes: Sequence[FixEvent]) -> dict[str, str]:
        """Apply a batch of accepted fixes in order; a fix older than the stored one is ignored.

        Returns the caregivers whose position moved, with their availability status. A large
        batch goes in script calls of ``UPDATE_CHUNK`` fixes, in order: Redis runs one script
        at a time, and an emergency's reads and writes must not wait behind thousands of fixes.
        """
        if not fixes:
            return {}
        applied: dict[str, str] = {}
        for start in range(0, len(fixes), UPDATE_CHUNK):
            rows = [_update_row(f) for f in fixes[start : start + UPDATE_CHUNK]]
            areas = dict.fromkeys(str(row[6]) for row in rows)
            unsent = [a for a in areas if a not in self._shapes_sent]
            shapes = [x for a in unsent for x in (a, shape(a))]
            flat = await self._update(keys=[], args=[self._ns, orjson.dumps(rows), *shapes])
            self._shapes_sent.update(unsent)
            applied.update((flat[i].decode(), flat[i + 1].decode()) for i in range(0, len(flat), 2))
        return applied

    async def join_own_cells(self, caregiver_ids: Sequence[str]) -> tuple[int, set[str]]:
        """Give each caregiver her entries in her own cells (a rebuild): entries that were
        missing, and the caregivers whose status is busy."""
        added, busy = await self._join(keys=[], args=[self._ns, *caregiver_ids])
        return int(added), {b.decode() for b in busy}

    async def leave_other_cells(self, level: str, cells: Sequence[tuple[str, ...]]) -> int:
        """Remove from these (agency, cell) cells of ``level`` whoever is not there: how many."""
        args = [self._ns, level, *(x for agency_cell in cells for x in agency_cell)]
        return int(await self._leave(keys=[], args=args))

    async def mark_offline(self, caregiver_id: str, at: float) -> bool:
        """Her phone went away at ``at`` (epoch s, as ingest received the notice): an available
        caregiver is offline, so no dispatch candidate, until her next fix. Busy stays busy;
        a fix received after ``at`` means she is back. True if she went offline."""
        return bool(await self._offline(keys=[], args=[self._ns, caregiver_id, repr(at)]))

    async def set_status(self, caregiver_id: str, status: str) -> None:
        """Her availability, in her hash and in her cells' entries at once; raises
        :class:`StorageError`."""
        try:
            await self._status(keys=[], args=[self._ns, caregiver_id, status])
        except RedisError as exc:
            raise StorageError(f"redis: setting {caregiver_id} {status}: {exc}") from exc

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
        step more (cells are not circles: someone just outside the first disk can be nearer
        than someone inside it); an area cell wholly farther than the ``need``-th kept is
        skipped, which changes no answer. :class:`dispatch.candidates.CandidateIndex` answers
        the same from the dispatch worker's copy (held to the same answers by
        tests/adapters/test_live_mirror.py).
        """
        if need <= 0:
            return []
        args: list[str | float | int] = [self._ns, agency_id, need, now, stale_after_s, lat, lon]
        for step in plan:
            args += [step.level, " ".join(step.cells)]
        flat = await self._search(keys=[], args=args)
        return [_candidate(flat[i], flat[i + 1], agency_id) for i in range(0, len(flat), 2)]

    async def candidates(self, caregiver_ids: Sequence[str]) -> list[Candidate]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for cid in caregiver_ids:
                pipe.hmget(self._keys.caregiver(cid), _FIELDS)
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
