"""Per-recipient outboxes in Redis: how servers' messages reach WebSocket clients.

A recipient is ``cg:{caregiver}``, ``patient:{patient}`` (the patient's family) or
``agency:{agency}`` (the agency's dispatchers). Each message gets the recipient's next ``seq``,
is kept in a capped stream (so a reconnecting client can resume after ``last_seq``) and is
published on the recipient's channel, which every gateway process relays.

Keys: ``{ns}:outseq:{recipient}`` (counter), ``{ns}:outbox:{recipient}`` (stream),
channel ``{ns}:out:{recipient}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import orjson
import redis.asyncio as aioredis
from pydantic import BaseModel

from careknot.settings import Settings

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


def caregiver(caregiver_id: str) -> str:
    return f"cg:{caregiver_id}"


def family_of(patient_id: str) -> str:
    return f"patient:{patient_id}"


def dispatchers(agency_id: str) -> str:
    return f"agency:{agency_id}"


class Outbox:
    """Sends frames to recipients; one Lua call per message, pipelined per batch."""

    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._script = redis.register_script(_NOTIFY)

    def channel_pattern(self) -> str:
        return self._settings.key("out", "*")

    def channel(self, recipient: str) -> str:
        return self._settings.key("out", recipient)

    def recipient_of(self, channel: str) -> str:
        return channel.removeprefix(self._settings.key("out", ""))

    async def send(self, items: Sequence[tuple[str, BaseModel]]) -> list[int]:
        """Send each (recipient, frame); returns the seqs given, in order."""
        if not items:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for recipient, frame in items:
                await self._script(
                    keys=[
                        self._settings.key("outseq", recipient),
                        self._settings.key("outbox", recipient),
                        self.channel(recipient),
                    ],
                    args=[orjson.dumps(frame.model_dump(mode="json")), OUTBOX_MAXLEN],
                    client=pipe,
                )
            return [int(s) for s in await pipe.execute()]

    async def since(self, recipient: str, last_seq: int) -> list[bytes]:
        """Messages kept for ``recipient`` with seq > ``last_seq``, oldest first."""
        key = self._settings.key("outbox", recipient)
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await self._redis.xrange(key))
        return [fields[b"msg"] for _id, fields in entries if int(fields[b"seq"]) > last_seq]
