"""Gateway tokens: a genuine token of this audience, signed with a key of the ring that was not
retired when it was issued, issued before now and not expired, verifies; anything else raises
AuthError only, saying why. Keys rotate: the newest signs, a retired one verifies only what it
signed before its retirement. A revoked holder's tokens lapse; the public development key is
taken only in development."""

from __future__ import annotations

import contextlib
import json
import stat
import string
from pathlib import Path

import jwt
import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from jwt import api_jws as jws

from kernel.errors import AuthError
from kernel.settings import DEV_TOKEN_SECRET, Settings
from kernel.tokens import (
    AUDIENCE,
    LEEWAY_S,
    Claims,
    Keyring,
    TokenKey,
    issue,
    keyring_of,
    lapsed,
    mint,
    renew,
    require_keyring,
    verify,
    write_keys_file,
)

SECRET = "s3cret-for-tests-s3cret-for-tests-0123"
NOW = 1_700_000_000.0
RING = Keyring((TokenKey("k1", SECRET),))


def claims(**changes: object) -> Claims:
    base: dict[str, object] = {
        "role": "family",
        "sub": "fam-1",
        "agency": "ag-1",
        "exp": NOW + 600,
        "iat": NOW - 5,
        "patients": ["p-1", "p-2"],
    }
    return Claims.model_validate({**base, **changes})


def signed(body: bytes, secret: str = SECRET, kid: str = "k1") -> str:
    """A correctly signed token over any body, as if the key had leaked to a fuzzer."""
    return jws.encode(body, secret, algorithm="HS256", headers={"kid": kid})


def body(**changes: object) -> bytes:
    doc = {
        "role": "family",
        "sub": "s",
        "agency": "a",
        "exp": NOW + 9,
        "iat": NOW,
        "aud": AUDIENCE,
        **changes,
    }
    return orjson.dumps({k: v for k, v in doc.items() if v is not None})


# ---------------------------------------------------------------- round trip


@pytest.mark.parametrize(
    "original",
    [
        claims(),
        claims(role="caregiver", sub="cg-9", patients=[]),
        claims(role="dispatcher", sub="d" * 128, agency="a" * 128),
        claims(sub="Zoë ☂", exp=NOW + 0.001),
    ],
)
def test_issue_verify_round_trip(original: Claims) -> None:
    token = issue(original, RING, NOW)
    assert token.count(".") == 2
    assert jwt.get_unverified_header(token)["kid"] == "k1"
    assert verify(token, RING, NOW) == original


def test_mint_stamps_issue_expiry_audience_and_a_unique_id() -> None:
    a, b = (mint(RING, "caregiver", "cg-1", "ag-1", 900, NOW) for _ in range(2))
    one, two = verify(a, RING, NOW), verify(b, RING, NOW)
    assert (one.iat, one.exp, one.aud) == (NOW, NOW + 900, AUDIENCE)
    assert one.jti != two.jti


# ---------------------------------------------------------------- keys rotate


def test_the_newest_key_signs_and_the_older_still_verifies_what_it_signed() -> None:
    old = Keyring((TokenKey("k1", SECRET),))
    rotated = Keyring(
        (TokenKey("k2", "another-secret-another-secret-0123"), TokenKey("k1", SECRET))
    )
    before = issue(claims(), old, NOW)
    after = issue(claims(), rotated, NOW)
    assert jwt.get_unverified_header(after)["kid"] == "k2"
    assert verify(before, rotated, NOW).sub == verify(after, rotated, NOW).sub == "fam-1"
    with pytest.raises(AuthError, match="unknown token key"):
        verify(after, old, NOW)  # a gateway not told of k2 yet takes none of its tokens


def test_a_retired_key_verifies_only_what_it_signed_before_it_was_retired() -> None:
    retired = Keyring((TokenKey("k2", "x" * 40), TokenKey("k1", SECRET, retired_at=NOW)))
    earlier = signed(body(iat=NOW - 60, exp=NOW + 600))
    later = signed(body(iat=NOW + 1, exp=NOW + 600))  # minted with the retired key
    assert verify(earlier, retired, NOW + 5).sub == "s"
    with pytest.raises(AuthError, match="retired key"):
        verify(later, retired, NOW + 5)
    assert retired.signer(NOW).kid == "k2"


def test_a_removed_key_verifies_nothing() -> None:
    token = issue(claims(), RING, NOW)
    with pytest.raises(AuthError, match="unknown token key"):
        verify(token, Keyring((TokenKey("k2", SECRET),)), NOW)  # same secret, another name


@pytest.mark.parametrize(
    ("text", "kids", "retired"),
    [
        ("k2:two,k1:one:1700000000", ["k2", "k1"], [None, 1_700_000_000.0]),
        ("k1:one\n\nk0:zero\n", ["k1", "k0"], [None, None]),
    ],
)
def test_a_keyring_is_read_newest_first(
    text: str, kids: list[str], retired: list[float | None]
) -> None:
    ring = Keyring.parse(text)
    assert [k.kid for k in ring.keys] == kids
    assert [k.retired_at for k in ring.keys] == retired


@pytest.mark.parametrize("text", ["", "k1", "k1:", ":secret", "k1:a,k1:b"])
def test_a_keyring_that_cannot_sign_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Keyring.parse(text)


# ---------------------------------------------------------------- where keys come from


def test_the_development_key_is_taken_only_in_development(tmp_path: Path) -> None:
    nowhere = str(tmp_path / "no-keys")
    plain = Settings(token_keys="", token_keys_file=nowhere, token_secret=DEV_TOKEN_SECRET)
    assert keyring_of(plain).development
    with pytest.raises(AuthError, match="development"):
        require_keyring(plain)
    told = plain.model_copy(update={"development": True})
    assert require_keyring(told).development


def test_careknot_up_writes_a_key_only_its_owner_reads_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "token-keys"
    ring = write_keys_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(ring.signer(NOW).secret) >= 32
    assert write_keys_file(path).keys == ring.keys  # a second start keeps it
    settings = Settings(token_keys="", token_keys_file=str(path))
    assert require_keyring(settings).keys == ring.keys
    given_keys = settings.model_copy(update={"token_keys": "kx:" + "y" * 40})
    assert [k.kid for k in keyring_of(given_keys).keys] == ["kx"]  # the setting wins


# ---------------------------------------------------------------- lapsing on an open connection


def test_a_token_lapses_when_it_expires_or_its_holder_is_revoked() -> None:
    c = claims(iat=NOW, exp=NOW + 60)
    assert lapsed(c, NOW + 59) is None
    assert lapsed(c, NOW + 60) == "token expired"
    assert lapsed(c, NOW, revoked_before=NOW - 1) is None  # revoked before it was issued
    assert lapsed(c, NOW + 1, revoked_before=NOW) == "token revoked"
    token = issue(c, RING, NOW)
    with pytest.raises(AuthError, match="token revoked"):
        verify(token, RING, NOW + 1, revoked_before=NOW + 1)


def test_a_revocation_ends_the_session_its_renewals_too() -> None:
    """Revoked after she signed in, before a renewal was issued (the renewal raced the
    revocation, or its clock is ahead): the renewed token is refused all the same."""
    signed_in = claims(iat=NOW, exp=NOW + 600, auth_time=NOW)
    fresh = verify(renew(signed_in, RING, NOW + 300, 600, 43_200), RING, NOW + 301)
    assert fresh.iat == NOW + 300 and fresh.signed_in_at == NOW
    assert lapsed(fresh, NOW + 301, revoked_before=NOW + 100) == "token revoked"
    with pytest.raises(AuthError, match="token revoked"):
        verify(renew(signed_in, RING, NOW + 300, 600, 43_200), RING, NOW + 301, NOW + 100)
    assert lapsed(fresh, NOW + 301, revoked_before=NOW - 1) is None  # revoked before she signed in


# ---------------------------------------------------------------- refusals


def tampered_body(token: str) -> str:
    head, payload, sig = token.split(".")
    raw = orjson.loads(jwt.utils.base64url_decode(payload))
    raw["patients"].append("p-someone-else")
    return f"{head}.{jwt.utils.base64url_encode(orjson.dumps(raw)).decode()}.{sig}"


def flipped_signature(token: str) -> str:
    head, payload, sig = token.split(".")
    return f"{head}.{payload}.{('B' if sig[0] == 'A' else 'A')}{sig[1:]}"


GOOD = issue(claims(), RING, NOW)
HS512 = jwt.encode(orjson.loads(body()), SECRET * 2, algorithm="HS512", headers={"kid": "k1"})


@pytest.mark.parametrize(
    ("token", "ring", "now", "why"),
    [
        (tampered_body(GOOD), RING, NOW, "signature"),
        (flipped_signature(GOOD), RING, NOW, "signature"),
        (GOOD, Keyring((TokenKey("k1", "another-secret-another-secret-01"),)), NOW, "signature"),
        (GOOD, RING, NOW + 600, "expired"),  # exp is exclusive
        (GOOD, RING, NOW + 10_000, "expired"),
        (issue(claims(exp=NOW - 1), RING, NOW), RING, NOW, "expired"),
        (signed(body(iat=NOW + LEEWAY_S + 5, exp=NOW + 600)), RING, NOW, "future"),
        (signed(body(aud="another-service")), RING, NOW, "audience"),
        (signed(body(aud=None)), RING, NOW, "claims"),
        (signed(body(iat=None)), RING, NOW, "claims"),
        (signed(body(), kid="k9"), RING, NOW, "unknown token key"),
        (jwt.encode(orjson.loads(body()), SECRET, algorithm="HS256"), RING, NOW, "unknown"),
        (HS512, RING, NOW, "claims"),  # another algorithm than the ring's
        ("", RING, NOW, "malformed"),
        (".", RING, NOW, "malformed"),
        ("..", RING, NOW, "malformed"),
        ("abc", RING, NOW, "malformed"),
        (GOOD + ".extra", RING, NOW, "malformed"),
        (GOOD.replace(".", ""), RING, NOW, "malformed"),
        ("Bearer " + GOOD, RING, NOW, "malformed"),
        (signed(b"not json"), RING, NOW, "claims"),
        (signed(b"[1, 2]"), RING, NOW, "claims"),
        (signed(b"\xff\xfe"), RING, NOW, "claims"),
        (signed(body(role="operator")), RING, NOW, "claims"),
        (signed(body(sub="")), RING, NOW, "claims"),
        (signed(body(agency=None)), RING, NOW, "claims"),
        (signed(body(exp="soon")), RING, NOW, "claims"),
        (signed(body(exp="inf")), RING, NOW, "claims"),  # a token that would never expire
        (signed(body(exp="NaN")), RING, NOW, "claims"),
        (signed(body(exp="2e+308")), RING, NOW, "claims"),
        (signed(body(patients="p-1")), RING, NOW, "claims"),
    ],
)
def test_verify_refuses_saying_why(token: str, ring: Keyring, now: float, why: str) -> None:
    with pytest.raises(AuthError, match=why):
        verify(token, ring, now)


def test_signed_valid_claims_verify() -> None:
    assert verify(signed(body()), RING, NOW).sub == "s"


# ---------------------------------------------------------------- fuzzing contract

TOKEN_CHARS = string.ascii_letters + string.digits + "-_.=+/ "


@given(token=st.text(alphabet=TOKEN_CHARS, max_size=200), now=st.floats(allow_nan=False))
def test_ascii_strings_raise_only_auth_error(token: str, now: float) -> None:
    with contextlib.suppress(AuthError):  # any other exception fails the test
        verify(token, RING, now)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
CLAIM_LIKE = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(
        ["role", "sub", "agency", "exp", "iat", "aud", "jti", "patients"], JSON_VALUES
    ),
).map(lambda d: json.dumps(d).encode())  # json allows NaN and huge ints


@given(body=st.binary(max_size=200) | CLAIM_LIKE)
def test_signed_garbage_raises_only_auth_error(body: bytes) -> None:
    with contextlib.suppress(AuthError):  # any other exception fails the test
        verify(signed(body), RING, NOW)


@given(token=st.text(max_size=200))
@example(token="abc.é.x")
@example(token="\ud800.abc.x")
def test_arbitrary_strings_raise_only_auth_error(token: str) -> None:
    with contextlib.suppress(AuthError):  # any other exception fails the test
        verify(token, RING, NOW)
