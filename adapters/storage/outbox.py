"""Per-recipient outboxes in Redis: how servers' messages reach WebSocket clients.

A recipient is ``cg:{caregiver}``, ``patient:{agency}:{patient}`` (the patient's family) or
``agency:{agency}`` (the agency's dispatchers). Each message gets the recipient's next ``seq``,
is kept in a capped stream (so a reconnecting client can resume after ``last_seq``) and is
published on the recipient's channel, which every gateway process relays
(:class:`adapters.storage.relay.OutboxChannels`).

Keys: ``{ns}:outpos:{recipient}`` (hash: ``seq``, the last given, and ``epoch``),
``{ns}:outbox:{recipient}`` (stream), channel ``{ns}:out:{recipient}``, and
``{ns}:announced:{id}`` (an announcement told: :meth:`Outbox.announce`).

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
ANNOUNCED_KEPT_S = 24 * 3600
"""How long an announcement's marker says it was told (a second delivery sends nothing)."""

# Every message to a recipient gets its next ``seq`` and the recipient's ``epoch``, spliced in
# front of the object's first key, so the payload is not re-encoded. The epoch is made (the
# server's time in microseconds) when the recipient's position hash is made, so a Redis that
# lost it (restarted without persistence, flushed) starts a new epoch, and a client holding
# seqs of the old one is told to resync instead of dropping the new ones as already seen.
_STAMP = """
local function stamp(position, n)
  local last = redis.call('HINCRBY', position, 'seq', n)
  local epoch = redis.call('HGET', position, 'epoch')
  if not epoch then
    local t = redis.call('TIME')
    epoch = t[1] .. string.format('%06d', tonumber(t[2]))
    redis.call('HSET', position, 'epoch', epoch)
  end
  return last - n, epoch
end
local function put(position, stream, channel, seq, epoch, body, maxlen)
  local msg = '{"seq":' .. seq .. ',"epoch":' .. epoch .. ',' .. string.sub(body, 2)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'seq', seq, 'epoch', epoch, 'msg', msg)
  redis.call('PUBLISH', channel, msg)
end
"""

# KEYS: position, stream, channel. ARGV: maxlen, then message JSON objects.
_NOTIFY_MANY = (
    _STAMP
    + """
local seq, epoch = stamp(KEYS[1], #ARGV - 1)
for i = 2, #ARGV do
  seq = seq + 1
  put(KEYS[1], KEYS[2], KEYS[3], seq, epoch, ARGV[i], ARGV[1])
end
return seq
"""
)

# KEYS: the announcement's marker, then (position, stream, channel) of each recipient.
# ARGV: maxlen, the marker's lifetime, then (recipient number from 1, message JSON) pairs.
# Nothing is sent when the marker exists (-1): the announcement was told already.
_ANNOUNCE = (
    _STAMP
    + """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) == false then return -1 end
for i = 3, #ARGV, 2 do
  local at = 1 + 3 * (tonumber(ARGV[i]) - 1)
  local seq, epoch = stamp(KEYS[at + 1], 1)
  put(KEYS[at + 1], KEYS[at + 2], KEYS[at + 3], seq + 1, epoch, ARGV[i + 1], ARGV[1])
end
return (#ARGV - 2) / 2
"""
)
LOCATION_EVERY_S = 1.0
LOCATIONS_PER_AGENCY = 500
FLUSH_TICK_S = 0.1


@dataclass(frozen=True, slots=True)
class Position:
    """Where a recipient's messages are: the last ``seq`` given in ``epoch`` (0 and 0 before
    the first message)."""

    seq: int
    epoch: int


class Outbox:
    """Sends frames to recipients; one script call per recipient and batch, pipelined."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._many = redis.register_script(_NOTIFY_MANY)
        self._announce = redis.register_script(_ANNOUNCE)

    def channel(self, recipient: str) -> str:
        return self._settings.keys.out_channel(recipient)

    async def send(self, items: Sequence[tuple[str, BaseModel]]) -> list[int]:
        """Send each (recipient, frame); returns the seqs given, in order."""
        if not items:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for recipient, frame in items:
                await self._many(
                    keys=self._keys(recipient),
                    args=[OUTBOX_MAXLEN, orjson.dumps(frame.model_dump(mode="json"))],
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

    async def announce(self, announcement_id: str, frames: Sequence[tuple[str, bytes]]) -> bool:
        """Send an announcement's frames (recipient, JSON object) in order and set its marker,
        in one script, unless the marker was set before; False then. Raises
        :class:`StorageError`."""
        order: dict[str, int] = {}
        args: list[bytes | str | int] = [OUTBOX_MAXLEN, ANNOUNCED_KEPT_S]
        for recipient, message in frames:
            args += [order.setdefault(recipient, len(order) + 1), message]
        keys = [self._settings.keys.announced(announcement_id)]
        for recipient in order:
            keys += self._keys(recipient)
        try:
            return int(await self._announce(keys=keys, args=args)) >= 0
        except RedisError as exc:
            raise StorageError(f"redis: announcing {announcement_id}: {exc}") from exc

    async def announced(self, announcement_id: str) -> bool:
        """Whether the announcement was told (its marker is there); raises
        :class:`StorageError`."""
        try:
            return bool(await self._redis.exists(self._settings.keys.announced(announcement_id)))
        except RedisError as exc:
            raise StorageError(f"redis: reading the marker of {announcement_id}: {exc}") from exc

    def _keys(self, recipient: str) -> list[str]:
        return [
            self._settings.keys.out_position(recipient),
            self._settings.keys.outbox(recipient),
            self.channel(recipient),
        ]

    async def since(self, recipient: str, last_seq: int, epoch: int | None = None) -> list[bytes]:
        """Messages kept for ``recipient`` with seq > ``last_seq`` (in ``epoch``, when given),
        oldest first; raises :class:`StorageError`."""
        try:
            raw = await self._redis.xrange(self._settings.keys.outbox(recipient))
        except RedisError as exc:
            raise StorageError(f"redis: reading the outbox of {recipient}: {exc}") from exc
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], raw)
        return [
            fields[b"msg"]
            for _id, fields in entries
            if int(fields[b"seq"]) > last_seq
            and (epoch is None or int(fields.get(b"epoch", 0)) == epoch)
        ]

    async def position(self, recipient: str) -> Position:
        """The recipient's last seq and its epoch; raises :class:`StorageError`."""
        try:
            seq, epoch = await self._redis.hmget(
                self._settings.keys.out_position(recipient), ["seq", "epoch"]
            )
        except RedisError as exc:
            raise StorageError(f"redis: reading the position of {recipient}: {exc}") from exc
        return Position(int(seq or 0), int(epoch or 0))

    async def seq_now(self, recipient: str) -> int:
        """The last seq given to ``recipient`` (0 before its first message); raises
        :class:`StorageError`."""
        return (await self.position(recipient)).seq


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
