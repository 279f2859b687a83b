"""Gateway tokens: a genuine, unexpired token verifies; anything else raises AuthError only."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import string

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kernel.errors import AuthError
from kernel.tokens import Claims, issue, verify

SECRET = "s3cret-for-tests"
NOW = 1_700_000_000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: object) -> Claims:
    base: dict[str, object] = {
        "role": "family",
        "sub": "fam-1",
        "agency": "ag-1",
        "exp": NOW + 600,
        "patients": ["p-1", "p-2"],
    }
    return Claims.model_validate({**base, **changes})


def signed(body: bytes, secret: str = SECRET) -> str:
    """A correctly signed token over any body, as if the secret had leaked to a fuzzer."""
    return sign_text(b64(body), secret)


def sign_text(head: str, secret: str = SECRET) -> str:
    mac = hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest()
    return f"{head}.{b64(mac)}"


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
    token = issue(original, SECRET)
    assert token.count(".") == 1
    assert "=" not in token
    assert verify(token, SECRET, NOW) == original


def test_patients_default_to_empty() -> None:
    token = signed(orjson.dumps({"role": "caregiver", "sub": "c", "agency": "a", "exp": NOW + 1}))
    assert verify(token, SECRET, NOW).patients == []


# ---------------------------------------------------------------- refusals


def tampered_body(token: str) -> str:
    body, _, sig = token.partition(".")
    raw = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    raw["patients"].append("p-someone-else")
    return f"{b64(orjson.dumps(raw))}.{sig}"


def flipped_signature(token: str) -> str:
    body, _, sig = token.partition(".")
    return f"{body}.{('B' if sig[0] == 'A' else 'A')}{sig[1:]}"


def body(**changes: object) -> bytes:
    doc = {"role": "family", "sub": "s", "agency": "a", "exp": NOW + 9, **changes}
    return orjson.dumps({k: v for k, v in doc.items() if v is not None})


GOOD = issue(claims(), SECRET)


@pytest.mark.parametrize(
    ("token", "secret", "now"),
    [
        (tampered_body(GOOD), SECRET, NOW),
        (flipped_signature(GOOD), SECRET, NOW),
        (GOOD.partition(".")[0] + "." + GOOD.partition(".")[0], SECRET, NOW),
        (GOOD, "another-secret", NOW),
        (GOOD, "", NOW),
        (GOOD, SECRET, NOW + 600),  # exp is exclusive
        (GOOD, SECRET, NOW + 10_000),
        (issue(claims(exp=NOW - 1), SECRET), SECRET, NOW),
        ("", SECRET, NOW),
        (".", SECRET, NOW),
        ("abc", SECRET, NOW),
        ("abc.", SECRET, NOW),
        (".abc", SECRET, NOW),
        (GOOD + ".extra", SECRET, NOW),
        (GOOD.replace(".", ""), SECRET, NOW),
        ("Bearer " + GOOD, SECRET, NOW),
        (signed(b"not json"), SECRET, NOW),
        (signed(b"[1, 2]"), SECRET, NOW),
        (signed(b"\xff\xfe"), SECRET, NOW),
        (signed(body(role="admin")), SECRET, NOW),
        (signed(body(sub="")), SECRET, NOW),
        (signed(body(agency=None)), SECRET, NOW),
        (signed(body(exp="soon")), SECRET, NOW),
        (signed(body(exp="inf")), SECRET, NOW),  # verified as never expiring, before
        (signed(body(exp="NaN")), SECRET, NOW),
        (signed(body(exp="2e+308")), SECRET, NOW),
        (signed(body(patients="p-1")), SECRET, NOW),
        ("!!!!." + signed(b"{}").partition(".")[2], SECRET, NOW),
    ],
)
def test_verify_refuses(token: str, secret: str, now: float) -> None:
    with pytest.raises(AuthError):
        verify(token, secret, now)


@pytest.mark.parametrize("head", ["a", "a!b", "ab=c"])  # not decodable as base64url
def test_undecodable_body_with_valid_signature_is_refused(head: str) -> None:
    with pytest.raises(AuthError, match="malformed token claims"):
        verify(sign_text(head), SECRET, NOW)


def test_signed_valid_claims_verify() -> None:
    assert verify(signed(body()), SECRET, NOW).sub == "s"


# ---------------------------------------------------------------- fuzzing contract

TOKEN_CHARS = string.ascii_letters + string.digits + "-_.=+/ "


@given(token=st.text(alphabet=TOKEN_CHARS, max_size=200), now=st.floats(allow_nan=False))
def test_ascii_strings_raise_only_auth_error(token: str, now: float) -> None:
    with contextlib.suppress(AuthError):  # any other exception fails the test
        verify(token, SECRET, now)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
CLAIM_LIKE = st.fixed_dictionaries(
    {}, optional=dict.fromkeys(["role", "sub", "agency", "exp", "patients"], JSON_VALUES)
).map(lambda d: json.dumps(d).encode())  # json allows NaN and huge ints


@given(body=st.binary(max_size=200) | CLAIM_LIKE)
def test_signed_garbage_raises_only_auth_error(body: bytes) -> None:
    with contextlib.suppress(AuthError):  # any other exception fails the test
        verify(signed(body), SECRET, NOW)


@given(token=st.text(max_size=200))
@example(token="abc.é")
@example(token="\ud800.abc")
def test_arbitrary_strings_raise_only_auth_error(token: str) -> None:
    with contextlib.suppress(AuthError):  # any other exception fails the test
        verify(token, SECRET, NOW)
