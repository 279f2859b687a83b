"""Revoked tokens in Redis: for a person (role and subject), the moment until which every token
of a sign-in is refused, renewed or not (``kernel.tokens.lapsed``). Kept :data:`KEPT_S`: a
session's longest (``Settings.token_session_max_s``) and a token's life (``token_ttl_s``), each
at the most the settings allow, and an hour: by then every token it refuses has expired anyway."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kernel.errors import AuthError, StorageError
from kernel.keys import Keys
from kernel.tokens import Claims, lapsed

KEPT_S = 7 * 86_400 + 86_400 + 3600
"""At least the most ``token_session_max_s`` and ``token_ttl_s`` may be, together."""


class Revocations:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._client, self._keys = client, keys

    async def revoke(self, role: str, subject: str, at: float) -> float:
        """Refuse the person's tokens of a sign-in until ``at``, and their renewals; the
        moment kept."""
        try:
            await self._client.set(self._keys.revoked(role, subject), repr(at), ex=int(KEPT_S))
        except RedisError as exc:
            raise StorageError(f"redis: revoking {role} {subject}: {exc}") from exc
        return at

    async def revoked_before(self, role: str, subject: str) -> float | None:
        """Until when the person's tokens are revoked, if they are."""
        try:
            value = await self._client.get(self._keys.revoked(role, subject))
        except RedisError as exc:
            raise StorageError(f"redis: reading {role} {subject}'s revocation: {exc}") from exc
        return None if value is None else float(value)

    async def still_good(self, claims: Claims, now: float) -> None:
        """:class:`AuthError` when the token taken before has expired or its holder's tokens
        were revoked since; :class:`StorageError` when Redis cannot tell."""
        why = lapsed(claims, now, await self.revoked_before(claims.role, claims.sub))
        if why is not None:
            raise AuthError(why)
