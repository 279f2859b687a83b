"""Gateway access tokens: short-lived JWTs (HS256, PyJWT) signed with a key named in their
header (``kid``), for one audience, with their issue and expiry times.

Claims: ``role``, ``sub``, ``agency``, ``patients`` (a family's relatives), ``aud``, ``iat``,
``exp``, ``jti`` and ``auth_time`` (when its holder signed in: :func:`renew` carries it, and renews
no session older than its maximum). Keys rotate without downtime (:class:`Keyring`): the newest key
signs; a key retired at a moment still verifies the tokens it signed before that moment, until they
expire, and none it signed after (a leaked key minting new ones). A token naming a key the ring does
not hold is refused. Revocation ends a person's sign-in sessions: every token of a sign-in at or
before a moment is refused, its renewals too, whenever they were issued. The moments are kept in
Redis (``adapters.storage``), and :func:`verify` and :func:`lapsed` take the one that applies.

Where the keys come from (:func:`keyring_of`): ``CAREKNOT_TOKEN_KEYS``, else the keys file
(``CAREKNOT_TOKEN_KEYS_FILE``, which ``careknot up`` writes with a fresh key, readable by its owner
only), else the development secret, which only a process told it is in development may use
(:func:`require_keyring`).
"""

from __future__ import annotations

import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from pydantic import BaseModel, Field, ValidationError

from kernel.contracts import Role
from kernel.errors import AuthError
from kernel.settings import DEV_TOKEN_SECRET, Settings

AUDIENCE = "careknot-gateway"
ALGORITHM = "HS256"
LEEWAY_S = 30.0
"""Clocks differ: a token issued this far in the future is still taken."""
MIN_SECRET_BYTES = 32


class Claims(BaseModel):
    role: Role
    sub: str = Field(min_length=1, max_length=128)
    agency: str = Field(min_length=1, max_length=128)
    exp: float = Field(allow_inf_nan=False)  # "inf" or "NaN" would be a token that never expires
    iat: float = Field(default=0.0, allow_inf_nan=False)
    aud: str = AUDIENCE
    jti: str = Field(default_factory=lambda: uuid.uuid4().hex, max_length=64)
    patients: list[str] = Field(default_factory=list)
    auth_time: float = Field(
        default=0.0,
        allow_inf_nan=False,
        description="when its holder signed in, carried across renewals (0: at iat)",
    )

    @property
    def signed_in_at(self) -> float:
        """When its holder signed in: what a renewal counts the session's age from (a token
        minted before renewals carried it signed in when it was issued)."""
        return min(self.auth_time, self.iat) if self.auth_time else self.iat


@dataclass(frozen=True, slots=True)
class TokenKey:
    kid: str
    secret: str
    retired_at: float | None = None
    """From this moment it signs nothing; what it signed before verifies until it expires."""


class Keyring:
    """The keys tokens are signed and verified with; the first key not retired signs."""

    def __init__(self, keys: tuple[TokenKey, ...]) -> None:
        if not keys:
            raise ValueError("a keyring needs a key")
        kids = [k.kid for k in keys]
        if len(set(kids)) != len(kids):
            raise ValueError(f"key ids are not unique: {kids}")
        self.keys = keys
        self._by_kid = {k.kid: k for k in keys}

    def signer(self, now: float) -> TokenKey:
        for key in self.keys:
            if key.retired_at is None or key.retired_at > now:
                return key
        raise ValueError("every key is retired: add a new one")

    def get(self, kid: str) -> TokenKey | None:
        return self._by_kid.get(kid)

    @property
    def development(self) -> bool:
        return any(k.secret == DEV_TOKEN_SECRET for k in self.keys)

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """``kid:secret[:retired_at]`` entries, separated by commas or lines, newest first."""
        keys = []
        for entry in text.replace("\n", ",").split(","):
            if not entry.strip():
                continue
            kid, _, rest = entry.strip().partition(":")
            secret, _, retired = rest.partition(":")
            if not kid or not secret:
                raise ValueError("a token key is kid:secret[:retired_at]")
            keys.append(TokenKey(kid, secret, float(retired) if retired else None))
        return cls(tuple(keys))


def keyring_of(settings: Settings) -> Keyring:
    if settings.token_keys:
        return Keyring.parse(settings.token_keys)
    path = Path(settings.token_keys_file)
    if settings.token_keys_file and path.is_file():
        return Keyring.parse(path.read_text())
    return Keyring((TokenKey("dev", settings.token_secret),))


def require_keyring(settings: Settings) -> Keyring:
    """The keyring a service verifies with; :class:`AuthError` when it holds the public
    development secret and the service was not told it is in development."""
    ring = keyring_of(settings)
    if ring.development and not settings.development:
        raise AuthError(
            "the token key is the public development secret: set CAREKNOT_TOKEN_KEYS (or run"
            " careknot up, which writes a key), or CAREKNOT_DEVELOPMENT=true on a test machine"
        )
    return ring


def write_keys_file(path: Path) -> Keyring:
    """A fresh key in a file only its owner may read (kept when it exists)."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"k{secrets.token_hex(3)}:{secrets.token_urlsafe(MIN_SECRET_BYTES)}\n")
    return Keyring.parse(path.read_text())


def issue(claims: Claims, ring: Keyring, now: float) -> str:
    key = ring.signer(now)
    body = claims.model_dump()
    body["iat"] = body["iat"] or now
    return jwt.encode(body, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})


def mint(
    ring: Keyring,
    role: Role,
    sub: str,
    agency: str,
    ttl_s: float,
    now: float,
    patients: list[str] | None = None,
) -> str:
    claims = Claims(role=role, sub=sub, agency=agency, exp=now + ttl_s, iat=now)
    return issue(claims.model_copy(update={"patients": patients or []}), ring, now)


def renew(claims: Claims, ring: Keyring, now: float, ttl_s: float, session_max_s: float) -> str:
    """A fresh token of the same person and claims, a new ``jti`` and expiry, its sign-in
    carried over: it expires ``ttl_s`` from now, but never beyond ``session_max_s`` after
    the sign-in, so a stolen token cannot be renewed for ever. :class:`AuthError` when the
    session is that old already, or so near its end that the fresh token would expire no later
    than this one (sign in again: renewing it again and again gains nothing). The claims are a
    verified token's."""
    signed_in = claims.signed_in_at
    ends = signed_in + session_max_s
    exp = min(now + ttl_s, ends)
    if ends <= now or exp <= claims.exp:
        raise AuthError("session over: sign in again")
    fresh = claims.model_copy(
        update={
            "iat": now,
            "exp": exp,
            "jti": uuid.uuid4().hex,
            "auth_time": signed_in,
        }
    )
    return issue(fresh, ring, now)


def verify(token: str, ring: Keyring, now: float, revoked_before: float | None = None) -> Claims:
    """The claims of a genuine token for this audience, issued before now (give or take the
    clocks' :data:`LEEWAY_S`), not expired, signed with a key that was not retired when it was
    issued, and of a sign-in after ``revoked_before`` if its holder's tokens were revoked; else
    :class:`AuthError` saying which."""
    if not token.isascii() or token.count(".") != 2:
        raise AuthError("malformed token")
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as exc:
        raise AuthError("malformed token") from exc
    key = ring.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise AuthError("unknown token key")
    try:
        body = jwt.decode(
            token,
            key.secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["exp", "iat", "aud"], "verify_exp": False, "verify_iat": False},
        )
        claims = Claims.model_validate(body)
    except jwt.InvalidAudienceError as exc:
        raise AuthError("token for another audience") from exc
    except jwt.InvalidSignatureError as exc:
        raise AuthError("bad token signature") from exc
    except (jwt.PyJWTError, ValidationError, ValueError) as exc:
        raise AuthError("malformed token claims") from exc
    return _checked(claims, key, now, revoked_before)


def lapsed(claims: Claims, now: float, revoked_before: float | None = None) -> str | None:
    """Why a token taken before is no longer good (``token expired``, ``token revoked``), or
    None: what an open connection is checked against. A revocation refuses every token of a
    sign-in at or before its moment (:attr:`Claims.signed_in_at`), a renewal issued after it
    too: it ends the session, not only the tokens issued until then."""
    if claims.exp <= now:
        return "token expired"
    if revoked_before is not None and claims.signed_in_at <= revoked_before:
        return "token revoked"
    return None


def _checked(claims: Claims, key: TokenKey, now: float, revoked_before: float | None) -> Claims:
    if claims.iat > now + LEEWAY_S:
        raise AuthError("token issued in the future")
    if key.retired_at is not None and claims.iat >= key.retired_at:
        raise AuthError("token signed with a retired key")
    why = lapsed(claims, now, revoked_before)
    if why is not None:
        raise AuthError(why)
    return claims
