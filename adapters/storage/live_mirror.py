"""A dispatcher's own copy of the Redis live index, in memory, kept in step with Redis.

The dispatcher searches for candidates in memory (``dispatch.candidates``) instead of asking Redis:
no round trip per search, no script time on the server. The copy is made from Redis's cell
hashes and then follows the index's change log (``{ns}:live:changes``, written by the same
script calls that change the index; see ``adapters.storage.live``):

- every change carries the next number of ``{ns}:live:seq``; a number out of sequence (entries
  dropped from the log while the copy lagged, Redis lost or flushed) or a ``reset`` (a rebuild)
  makes the copy read the index anew;
- a search is given the index's *change number*, the value of ``{ns}:live:seq`` read
  beforehand (one small round trip, which the dispatcher makes at the same time as its Postgres
  read of the incident's offers), and waits, briefly, until the copy has applied every change
  up to it: so the dispatcher sees every fix and status change Redis had before it began. A
  copy that is not ready or cannot catch up in time says so, and the dispatcher asks Redis
  instead.

Changes are absolute (a caregiver's whole place, or her status): a copy made while the index
changes and then replays the log from just before it comes out right.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from adapters.storage.live import ENTRY
from dispatch.candidates import CandidateIndex
from dispatch.model import Candidate
from dispatch.ranking import SearchStep
from kernel.backoff import Backoff
from kernel.settings import Settings

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1000  # a quiet log is checked against the sequence this often
READ_COUNT = 64  # log entries read at a time
SNAPSHOT_BATCH = 500  # cell hashes read at a time when copying
CATCH_UP_S = 0.05  # how long a search waits for the copy to catch up before asking Redis
RETRY_S = 0.5
RETRY_CAP_S = 5.0
APPLY_SLICE = 256  # fixes applied between two looks at the dispatcher's other work


class _Resync(Exception):
    """The copy lost step with the log: read the index anew."""


class LiveMirror:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._keys = settings.keys
        self._seq_key = self._keys.live_seq()
        self._log_key = self._keys.live_changes()
        self.index = CandidateIndex()
        self.seq = 0
        self.ready = False
        self.copies = 0  # how many times the index was read anew
        self.answered = 0  # searches answered from the copy
        self.behind = 0  # searches sent to Redis because the copy had not caught up in time
        self.unready = 0  # searches sent to Redis because the copy was being made
        self._last_id = b"0-0"
        self._advanced = asyncio.Event()

    # ------------------------------------------------------------ searching

    async def change_number(self) -> int:
        """The number of the last change Redis has made to the index: a search given it
        answers as of that change or later. One small round trip, which the dispatcher makes
        while it reads the incident's offers from Postgres."""
        return int(await self._redis.get(self._seq_key) or 0)

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
        change: int,
    ) -> list[Candidate] | None:
        """As :meth:`LiveIndex.search` answers, from memory, once the copy holds change
        ``change`` (see :meth:`change_number`); None when the copy is not ready or does not reach it
        within ``CATCH_UP_S``."""
        if self.seq < change and not await self._reach(change, CATCH_UP_S):
            if self.ready:
                self.behind += 1
                log.warning(
                    "live mirror: at change %d, %d asked: searching Redis", self.seq, change
                )
            return None
        if not self.ready:
            self.unready += 1
            return None
        self.answered += 1
        return self.index.nearest(
            agency_id, plan, lat=lat, lon=lon, need=need, now=now, stale_after_s=stale_after_s
        )

    async def caught_up(self, within_s: float = CATCH_UP_S) -> bool:
        """Whether the copy holds every change Redis had when this was called."""
        if not self.ready:
            return False
        return await self._reach(await self.change_number(), within_s)

    async def _reach(self, target: int, within_s: float) -> bool:
        """Until the copy has applied change ``target``; False if not within ``within_s``."""
        deadline = time.monotonic() + within_s
        while self.ready and self.seq < target:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._advanced.wait(), left)
            except TimeoutError:
                return False
        return self.ready

    async def wait_ready(self) -> None:
        """Until the copy is made."""
        while not self.ready:
            await self._advanced.wait()

    # ------------------------------------------------------------ following

    async def run(self) -> None:
        """Copy the index, then follow its log, for ever (cancel to stop); a lost Redis is tried
        again with the backoff."""
        backoff = Backoff(first=RETRY_S, cap=RETRY_CAP_S)
        while True:
            try:
                await self._copy()
                backoff.reset()
                while True:
                    await self._follow()
            except _Resync as why:
                log.info("live mirror: reading the index anew (%s)", why)
            except (RedisError, OSError) as exc:
                delay = backoff.next()
                log.warning("live mirror: %s; reading the index anew in %.1f s", exc, delay)
                self.ready = False
                await asyncio.sleep(delay)
            finally:
                self.ready = False

    async def _copy(self) -> None:
        """The index as its cell hashes hold it now, and where in the log that is."""
        self.ready = False
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self._seq_key)
            pipe.xrevrange(self._log_key, count=1)
            seq, last = await pipe.execute()
        index = CandidateIndex()
        best: dict[str, tuple[str, str, float, float, float, str]] = {}
        prefix = self._keys.cell_prefix("street")
        keys: list[bytes] = []
        async for key in self._redis.scan_iter(match=f"{prefix}*", count=SNAPSHOT_BATCH):
            keys.append(key)
            if len(keys) >= SNAPSHOT_BATCH:
                await self._read_cells(keys, prefix, best)
                keys = []
        await self._read_cells(keys, prefix, best)
        for n, (cid, (agency, cell, ts, lat, lon, status)) in enumerate(best.items(), 1):
            index.put(cid, agency, cell, ts, lat, lon, status)
            if n % APPLY_SLICE == 0:
                await asyncio.sleep(0)
        self.index, self.seq = index, int(seq or 0)
        self._last_id = last[0][0] if last else b"0-0"
        self.copies += 1
        self.ready = True
        self._wake()
        log.info("live mirror: %d caregivers copied at change %d", len(index), self.seq)

    async def _read_cells(
        self, keys: list[bytes], prefix: str, best: dict[str, tuple[Any, ...]]
    ) -> None:
        """Each caregiver of these street cells, the latest entry where she is in two."""
        if not keys:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            cells = await pipe.execute()
        for key, entries in zip(keys, cells, strict=True):
            agency, cell = key.decode().removeprefix(prefix).rsplit(":", 1)
            for cid_b, e in entries.items():
                ts, lat, lon = ENTRY.unpack_from(e)
                cid = cid_b.decode()
                if cid not in best or best[cid][2] < ts:
                    best[cid] = (agency, cell, ts, lat, lon, e[ENTRY.size :].decode())

    async def _follow(self) -> None:
        """Apply the log's next entries; on a quiet log, check the sequence is still ours."""
        got: Any = await self._redis.xread(  # RESP2: [[stream, [(id, fields), ...]]]
            {self._log_key: self._last_id}, count=READ_COUNT, block=READ_BLOCK_MS
        )
        if not got:
            current = int(await self._redis.get(self._seq_key) or 0)
            if current != self.seq:
                raise _Resync(f"sequence at {current}, copy at {self.seq}")
            return
        for entry_id, fields in got[0][1]:
            await self._apply(fields)
            self._last_id = entry_id
            self._wake()

    async def _apply(self, fields: dict[bytes, bytes]) -> None:
        """One change, a slice of fixes at a time: a batch of thousands does not hold up the
        dispatcher's other work (a search in between sees some of its fixes, as it would
        have seen them arrive one by one)."""
        seq = int(fields[b"seq"])
        if seq != self.seq + 1:
            raise _Resync(f"change {seq} after {self.seq}")
        kind = fields[b"kind"]
        if kind == b"fixes":
            tokens = fields[b"applied"].split()
            applied = [(int(tokens[i]), tokens[i + 1].decode()) for i in range(0, len(tokens), 2)]
            for n, place in enumerate(applied_places(orjson.loads(fields[b"rows"]), applied), 1):
                self.index.put(*place)
                if n % APPLY_SLICE == 0:
                    await asyncio.sleep(0)
        elif kind == b"status":
            self.index.set_status(fields[b"id"].decode(), fields[b"status"].decode())
        else:
            raise _Resync(kind.decode())
        self.seq = seq

    def _wake(self) -> None:
        self._advanced.set()
        self._advanced = asyncio.Event()


def applied_places(
    rows: Sequence[Sequence[str | float]], applied: Sequence[tuple[int, str]]
) -> Iterator[tuple[str, str, str, float, float, float, str]]:
    """The applied fixes of a logged update as arguments of :meth:`CandidateIndex.put`:
    ``rows`` as the update script took them (``adapters.storage.live._update_row``: id, agency,
    lat, lon, ts, cell, ...) and ``applied`` the (row, status after) of those it
    applied."""
    for i, status in applied:
        cid, agency, lat, lon, ts, cell = rows[i][:6]
        yield str(cid), str(agency), str(cell), float(ts), float(lat), float(lon), status
