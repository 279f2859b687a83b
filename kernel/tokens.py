"""Signed, short-lived gateway tokens (HMAC-SHA256 over a compact JSON claim set).

Format: ``base64url(claims) "." base64url(hmac)``. Claims: ``role``, ``sub``, ``agency``,
``exp`` (epoch s) and, for families, ``patients`` (the relatives they may see).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
from pydantic import BaseModel, Field, ValidationError

from kernel.contracts import Role
from kernel.errors import AuthError


class Claims(BaseModel):
    role: Role
    sub: str = Field(min_length=1, max_length=128)
    agency: str = Field(min_length=1, max_length=128)
    exp: float = Field(allow_inf_nan=False)  # "inf" or "NaN" would be a token that never expires
    patients: list[str] = Field(default_factory=list)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, body: str) -> str:
    return _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())


def issue(claims: Claims, secret: str) -> str:
    body = _b64(orjson.dumps(claims.model_dump()))
    return f"{body}.{_sign(secret, body)}"


def verify(token: str, secret: str, now: float) -> Claims:
    """Return the claims of a genuine, unexpired token or raise :class:`AuthError`."""
    body, _, signature = token.partition(".")
    if not body or not signature or not token.isascii():
        raise AuthError("malformed token")
    if not hmac.compare_digest(signature, _sign(secret, body)):
        raise AuthError("bad token signature")
    try:
        claims = Claims.model_validate(orjson.loads(_unb64(body)))
    except (ValueError, ValidationError) as exc:
        raise AuthError("malformed token claims") from exc
    if claims.exp <= now:
        raise AuthError("token expired")
    return claims
