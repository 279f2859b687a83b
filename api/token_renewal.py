"""``POST /v1/tokens/renew``: a page kept open for hours renews its token before it expires.

It takes a still-good token (genuine, not expired, its holder's tokens not revoked: the
bearer check every route makes) and answers a fresh one of the same person and claims, with a
new expiry (``token_ttl_s`` from now) and the same sign-in: the first token's ``auth_time``
is carried across renewals, and no token is renewed, nor expires, beyond
``token_session_max_s`` after it. Any good token may so be renewed, again and again, for up to
that long (12 h by default) after its sign-in unless revoked: a token that leaked can be kept
alive that long, no longer. A revocation ends the session: a token of a sign-in at or before
its moment is refused, a renewal issued after that moment too (``kernel.tokens.lapsed``), so a
renewal that raced the revocation, or a clock ahead, keeps nothing alive.
A session past its most is refused 401 ``session_over``: sign in again; so is a token the
renewal could not make expire any later (it already expires at its session's end, the answer's
``session_ends_at``: a page stops renewing once its ``exp`` reaches that). The fresh token goes
to an open WebSocket as an ``auth`` frame, and to the API's calls as the bearer.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from api.auth import UNAUTHORISED, Caller, Trust
from api.problems import Refused
from kernel import tokens
from kernel.errors import AuthError
from kernel.settings import Settings

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


class RenewedToken(BaseModel):
    token: str = Field(description="the fresh token: the bearer from now on")
    exp: float = Field(description="when it expires (epoch s)")
    auth_time: float = Field(description="when its holder signed in (epoch s): renewals keep it")
    session_ends_at: float = Field(description="no renewal goes beyond this: sign in again then")


@router.post(
    "/renew",
    response_model=RenewedToken,
    summary="a fresh token of the same person and claims, before this one expires",
    responses={401: {"description": "no good token, or its session is over: sign in again"}},
)
async def renew(request: Request, claims: Caller) -> RenewedToken:
    trust: Trust = request.app.state.trust
    settings: Settings = request.app.state.settings
    now = time.time()
    try:
        token = tokens.renew(
            claims, trust.ring, now, settings.token_ttl_s, settings.token_session_max_s
        )
    except AuthError as exc:
        raise Refused(401, "session_over", str(exc), UNAUTHORISED) from exc
    fresh = tokens.verify(token, trust.ring, now)
    return RenewedToken(
        token=token,
        exp=fresh.exp,
        auth_time=fresh.auth_time,
        session_ends_at=fresh.auth_time + settings.token_session_max_s,
    )
