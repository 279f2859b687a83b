"""Renewing a token through the HTTP API, on the real Postgres and Redis: a still-good token is
answered a fresh one of the same person and claims, which the API and the gateway's check both
take, its sign-in carried across renewals and its expiry never beyond the session's most; an
expired, revoked or over-age token, or none, is refused in the API's refusal shape."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt
import pytest
import redis.asyncio as aioredis

from adapters.storage.revocations import Revocations
from kernel import tokens
from kernel.settings import Settings

pytestmark = pytest.mark.servers

RENEW = "/v1/tokens/renew"


def _mint(settings: Settings, **claims: object) -> str:
    now = time.time()
    fields: dict[str, object] = {
        "role": "family",
        "sub": f"fam-{uuid.uuid4().hex[:6]}",
        "agency": "renewing",
        "iat": now,
        "exp": now + 600,
        "patients": ["p-1", "p-2"],
        **claims,
    }
    return tokens.issue(tokens.Claims.model_validate(fields), tokens.keyring_of(settings), now)


async def _renew(api: httpx.AsyncClient, token: str) -> httpx.Response:
    return await api.post(RENEW, headers={"Authorization": f"Bearer {token}"})


async def test_a_good_token_is_renewed_with_the_same_claims_and_its_sign_in(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    signed_in = time.time() - 3600
    old = _mint(settings, iat=time.time() - 60, auth_time=signed_in)
    answer = await _renew(api, old)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    ring = tokens.keyring_of(settings)
    before, fresh = (
        tokens.verify(old, ring, time.time()),
        tokens.verify(body["token"], ring, time.time()),
    )
    same = ("role", "sub", "agency", "patients", "aud")
    assert [getattr(fresh, k) for k in same] == [getattr(before, k) for k in same]
    assert fresh.jti != before.jti and fresh.iat > before.iat
    assert fresh.auth_time == pytest.approx(signed_in)
    assert fresh.exp == pytest.approx(fresh.iat + settings.token_ttl_s)
    assert body["exp"] == fresh.exp and body["auth_time"] == fresh.auth_time
    assert body["session_ends_at"] == pytest.approx(signed_in + settings.token_session_max_s)

    again = await _renew(api, body["token"])  # renewed again: the same sign-in
    assert again.status_code == 200
    assert tokens.verify(again.json()["token"], ring, time.time()).auth_time == fresh.auth_time


async def test_a_renewal_never_outlives_the_session(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    most = settings.token_session_max_s
    near_end = time.time() - most + 120  # signed in long ago: two minutes of session left
    answer = await _renew(api, _mint(settings, auth_time=near_end, exp=time.time() + 60))
    assert answer.status_code == 200
    assert answer.json()["exp"] == pytest.approx(near_end + most)

    over = await _renew(api, _mint(settings, auth_time=time.time() - most - 1))
    assert over.status_code == 401
    assert over.json() == {"reason": "session_over", "detail": "session over: sign in again"}
    assert over.headers["WWW-Authenticate"] == "Bearer"


async def test_a_renewal_that_cannot_expire_later_is_refused(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    """Under a minute of the session left: renewed once, the fresh token expires at the session's
    end; renewing that one again would answer the same expiry, so it is refused (a page that
    renewed again and again until the end would only flood the API and the gateway)."""
    now = time.time()
    ends = now + 45  # its session ends in 45 s
    signed_in = ends - settings.token_session_max_s
    first = await _renew(api, _mint(settings, auth_time=signed_in, exp=now + 30))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["exp"] == pytest.approx(ends) and body["session_ends_at"] == pytest.approx(ends)

    again = await _renew(api, body["token"])
    assert again.status_code == 401, again.text
    assert again.json() == {"reason": "session_over", "detail": "session over: sign in again"}
    assert again.headers["WWW-Authenticate"] == "Bearer"
    # nor is a token that already expires at (or after) where a renewal would end
    late = await _renew(api, _mint(settings, auth_time=signed_in, exp=ends + 5))
    assert (late.status_code, late.json()["reason"]) == (401, "session_over")


async def test_a_token_of_before_renewals_signed_in_when_it_was_issued(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    issued = time.time() - 30
    ring = tokens.keyring_of(settings)
    claims = tokens.Claims(
        role="dispatcher", sub="desk", agency="renewing", iat=issued, exp=issued + 600
    )
    body = claims.model_dump(exclude={"auth_time"})
    key = ring.signer(issued)
    old = jwt.encode(body, key.secret, algorithm=tokens.ALGORITHM, headers={"kid": key.kid})
    answer = await _renew(api, old)
    assert answer.status_code == 200
    assert answer.json()["auth_time"] == pytest.approx(issued)


async def test_expired_revoked_and_missing_tokens_are_refused(
    api: httpx.AsyncClient, settings: Settings, redis: aioredis.Redis
) -> None:
    expired = _mint(settings, iat=time.time() - 1200, exp=time.time() - 600)
    revoked_sub = f"gone-{uuid.uuid4().hex[:6]}"
    revoked = _mint(settings, sub=revoked_sub, iat=time.time() - 5)
    await Revocations(redis, settings.keys).revoke("family", revoked_sub, time.time())
    for token in (expired, revoked):
        answer = await _renew(api, token)
        assert answer.status_code == 401, answer.text
        assert answer.json()["reason"] == "unauthorised"
    assert (await _renew(api, revoked.replace(".", "x", 1))).status_code == 401
    nothing = await api.post(RENEW)
    assert (nothing.status_code, nothing.json()["reason"]) == (401, "unauthorised")
    assert set(nothing.json()) == {"reason", "detail"}


async def test_a_revocation_ends_the_session_its_renewed_tokens_too(
    api: httpx.AsyncClient, settings: Settings, redis: aioredis.Redis
) -> None:
    """Revoked at a moment after she signed in but before her token was renewed (a renewal that
    raced the revocation, or a clock ahead): the renewed token is refused by every route."""
    desk = f"desk-{uuid.uuid4().hex[:6]}"
    signed_in = time.time() - 60
    old = _mint(settings, role="dispatcher", sub=desk, iat=signed_in, patients=[])
    answer = await _renew(api, old)
    assert answer.status_code == 200, answer.text
    fresh = answer.json()["token"]
    bearer = {"Authorization": f"Bearer {fresh}"}
    caregivers = "/v1/agencies/another/caregivers"  # refused before any read of the database
    taken = await api.get(caregivers, headers=bearer)
    assert (taken.status_code, taken.json()["reason"]) == (403, "other_agency")  # but taken

    await Revocations(redis, settings.keys).revoke("dispatcher", desk, signed_in + 30)
    for refused in (await api.get(caregivers, headers=bearer), await _renew(api, fresh)):
        assert refused.status_code == 401, refused.text
        assert refused.json() == {"reason": "unauthorised", "detail": "token revoked"}
    # signed in again after the revocation: taken
    again = _mint(settings, role="dispatcher", sub=desk, iat=time.time(), patients=[])
    assert (await _renew(api, again)).status_code == 200
