"""Per-recipient outboxes in Redis: how servers' messages reach WebSocket clients.

A recipient is ``cg:{caregiver}``, ``patient:{patient}`` (the patient's family) or
``agency:{agency}`` (the agency's dispatchers). Each message gets the recipient's next ``seq``,
is kept in a capped stream (so a reconnecting client can resume after ``last_seq``) and is
published on the recipient's channel, which every gateway process relays
(:class:`adapters.storage.relay.OutboxChannels`).

Keys: ``{ns}:outseq:{recipient}`` (counter), ``{ns}:outbox:{recipient}`` (stream),
channel ``{ns}:out:{recipient}``.

Caregivers' positions reach dispatchers as ``location`` frames through a
:class:`LocationThrottle`: per agency, at most one flush every ``every_s`` with at most
``per_agency`` frames, and in a flush at most one frame per caregiver, her latest position (a
newer fix replaces the one waiting, which keeps its place in the queue). At 20,000 fixes/s
this bounds what Redis, the gateways and the consoles get, and every caregiver's latest
position still arrives. A flush is one script call per agency (:meth:`Outbox.send_many`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.exceptions import RedisError

from kernel import recipients
from kernel.errors import StorageError
from kernel.settings import Settings

log = logging.getLogger(__name__)

OUTBOX_MAXLEN = 1000

# KEYS: seq counter, stream, channel. ARGV: message JSON (an object), maxlen.
# The seq is spliced in front of the object's first key, so the payload is not re-encoded.
_NOTIFY = """
local seq = redis.call('INCR', KEYS[1])
local msg = '{"seq":' .. seq .. ',' .. string.sub(ARGV[1], 2)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'seq', seq, 'msg', msg)
redis.call('PUBLISH', KEYS[3], msg)
return seq
"""

# KEYS: seq counter, stream, channel. ARGV: maxlen, then message JSON objects.
_NOTIFY_MANY = """
local n = #ARGV - 1
local seq = redis.call('INCRBY', KEYS[1], n) - n
for i = 2, #ARGV do
  seq = seq + 1
  local msg = '{"seq":' .. seq .. ',' .. string.sub(ARGV[i], 2)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'seq', seq, 'msg', msg)
  redis.call('PUBLISH', KEYS[3], msg)
end
return seq
"""
LOCATION_EVERY_S = 1.0
LOCATIONS_PER_AGENCY = 500
FLUSH_TICK_S = 0.1


class Outbox:
    """Sends frames to recipients; one Lua call per message, pipelined per batch."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._script = redis.register_script(_NOTIFY)
        self._many = redis.register_script(_NOTIFY_MANY)

    def channel(self, recipient: str) -> str:
        return self._settings.keys.out_channel(recipient)

    async def send(self, items: Sequence[tuple[str, BaseModel]]) -> list[int]:
        """Send each (recipient, frame); returns the seqs given, in order."""
        if not items:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for recipient, frame in items:
                await self._script(
                    keys=self._keys(recipient),
                    args=[orjson.dumps(frame.model_dump(mode="json")), OUTBOX_MAXLEN],
                    client=pipe,
                )
            return [int(s) for s in await pipe.execute()]

    async def send_many(self, batches: Sequence[tuple[str, Sequence[bytes]]]) -> None:
        """Send each recipient its messages (JSON objects) in order: one script call each."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for recipient, messages in batches:
                if messages:
                    await self._many(
                        keys=self._keys(recipient), args=[OUTBOX_MAXLEN, *messages], client=pipe
                    )
            await pipe.execute()

    def _keys(self, recipient: str) -> list[str]:
        return [
            self._settings.keys.out_seq(recipient),
            self._settings.keys.outbox(recipient),
            self.channel(recipient),
        ]

    async def since(self, recipient: str, last_seq: int) -> list[bytes]:
        """Messages kept for ``recipient`` with seq > ``last_seq``, oldest first; raises
        :class:`StorageError`."""
        try:
            raw = await self._redis.xrange(self._settings.keys.outbox(recipient))
        except RedisError as exc:
            raise StorageError(f"redis: reading the outbox of {recipient}: {exc}") from exc
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], raw)
        return [fields[b"msg"] for _id, fields in entries if int(fields[b"seq"]) > last_seq]

    async def seq_now(self, recipient: str) -> int:
        """The last seq given to ``recipient`` (0 before its first message); raises
        :class:`StorageError`."""
        try:
            seq = await self._redis.get(self._settings.keys.out_seq(recipient))
        except RedisError as exc:
            raise StorageError(f"redis: reading the seq of {recipient}: {exc}") from exc
        return int(seq or 0)


@dataclass
class LocationThrottle:
    """Coalesces caregivers' location frames per agency (pure: the time is passed in)."""

    every_s: float = LOCATION_EVERY_S
    per_agency: int = LOCATIONS_PER_AGENCY
    _waiting: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _flushed_at: dict[str, float] = field(default_factory=dict)

    def offer(self, agency_id: str, caregiver_id: str, frame: dict[str, Any]) -> None:
        """Queue a caregiver's newest frame; one still waiting is replaced, keeping its place."""
        self._waiting.setdefault(agency_id, {})[caregiver_id] = frame

    def due(self, now: float) -> list[tuple[str, list[dict[str, Any]]]]:
        """(recipient, frames) of every agency whose turn has come, oldest waiting first."""
        out = []
        for agency_id, waiting in list(self._waiting.items()):
            if now - self._flushed_at.get(agency_id, -math.inf) < self.every_s:
                continue
            ids = list(itertools.islice(waiting, self.per_agency))
            out.append((recipients.dispatchers(agency_id), [waiting.pop(cid) for cid in ids]))
            self._flushed_at[agency_id] = now
            if not waiting:
                del self._waiting[agency_id]
        return out

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiting.values())


async def flush_due(box: Outbox, throttle: LocationThrottle, now: float) -> None:
    """Send what the throttle says is due."""
    due = throttle.due(now)
    if due:
        await box.send_many([(r, [orjson.dumps(f) for f in frames]) for r, frames in due])


async def keep_flushing(
    box: Outbox, throttle: LocationThrottle, clock: Callable[[], float]
) -> None:
    """Flush the throttle every :data:`FLUSH_TICK_S` until cancelled (a server's error is
    logged and the frames stay lost: positions are refreshed by the next fixes)."""
    while True:
        await asyncio.sleep(FLUSH_TICK_S)
        try:
            await flush_due(box, throttle, clock())
        except Exception:
            log.warning("location frames not sent", exc_info=True)
