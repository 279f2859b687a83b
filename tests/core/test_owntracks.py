"""OwnTracks parsing: the app's own payloads, as its JSON format documents them, unchanged."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.owntracks import (
    OwnTracksDevice,
    OwnTracksLastWill,
    OwnTracksLocation,
    OwnTracksOther,
    device_of,
    is_owntracks,
    parse,
)
from ingest.parse import Limits, location_fix
from kernel.errors import RejectedPayload

NOW = 1_700_000_000.0
TST = 1_699_999_990
TOPIC = "owntracks/jane/phone"
JANE = OwnTracksDevice("jane", "phone")
LIMITS = Limits()

# A location as the Android and iOS apps publish it (documented fields, with the extras the
# apps add: bs, conn, created_at, m, SSID, BSSID, inregions, topic, vac, t, tid).
LOCATION: dict[str, Any] = {
    "_type": "location",
    "acc": 13,
    "alt": 64,
    "batt": 78,
    "bs": 1,
    "cog": 270,
    "conn": "m",
    "created_at": TST + 1,
    "lat": 53.8008,
    "lon": -1.5491,
    "m": 1,
    "t": "u",
    "tid": "jp",
    "topic": TOPIC,
    "tst": TST,
    "vac": 4,
    "vel": 18,
    "SSID": "careknot-guest",
    "BSSID": "b0:f2:8:45:94:33",
    "inregions": ["Mrs Patel"],
}
LAST_WILL = {"_type": "lwt", "tst": TST - 3600}
OTHERS: list[tuple[dict[str, Any], str]] = [
    (
        {
            "_type": "transition",
            "wtst": TST - 86_400,
            "lat": 53.8008,
            "lon": -1.5491,
            "tst": TST,
            "acc": 12,
            "tid": "jp",
            "event": "enter",
            "desc": "Mrs Patel",
            "t": "c",
        },
        "transition",
    ),
    (
        {"_type": "waypoint", "desc": "Mrs Patel", "lat": 53.8, "lon": -1.55, "rad": 50, "tst": 1},
        "waypoint",
    ),
    ({"_type": "card", "name": "Jane Carer", "tid": "jp"}, "card"),
    ({"_type": "status", "iOS": {"locked": False}}, "status"),
]


def body(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


def reason_of(topic: str, payload: bytes) -> str:
    with pytest.raises(RejectedPayload) as info:
        parse(topic, payload, LIMITS)
    return info.value.reason


def test_a_location_is_read_with_every_field_the_app_sends() -> None:
    message = parse(TOPIC, body(LOCATION), LIMITS)
    assert isinstance(message, OwnTracksLocation)
    assert message.device == JANE
    loc = message.location
    assert (loc.lat, loc.lon, loc.tst) == (53.8008, -1.5491, TST)
    assert (loc.acc, loc.batt, loc.vel, loc.cog, loc.alt) == (13, 78, 18, 270, 64)


def test_the_minimal_location_is_enough() -> None:
    minimal = {"_type": "location", "lat": 53.8, "lon": -1.5, "tst": TST}
    message = parse(TOPIC, body(minimal), LIMITS)
    assert isinstance(message, OwnTracksLocation)
    assert message.location.acc is None


def test_a_location_becomes_the_mapped_caregivers_fix() -> None:
    message = parse(TOPIC, body(LOCATION), LIMITS)
    assert isinstance(message, OwnTracksLocation)
    fix = location_fix(message.location, "leeds-care", "cg-jane", TOPIC, NOW, LIMITS)
    assert (fix.caregiver_id, fix.agency_id, fix.event_id) == (
        "cg-jane",
        "leeds-care",
        f"cg-jane:{TST}",
    )
    assert (fix.ts, fix.acc, fix.vel, fix.batt, fix.received_at) == (TST, 13, 18, 78, NOW)


def test_the_last_will_is_recognised() -> None:
    assert parse(TOPIC, body(LAST_WILL), LIMITS) == OwnTracksLastWill(JANE, TST - 3600)
    assert parse(TOPIC, b'{"_type":"lwt"}', LIMITS) == OwnTracksLastWill(JANE, None)


@pytest.mark.parametrize(("doc", "kind"), OTHERS)
def test_other_types_are_recognised_not_refused(doc: dict[str, Any], kind: str) -> None:
    assert parse(TOPIC, body(doc), LIMITS) == OwnTracksOther(JANE, kind)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("owntracks/jane", body(LOCATION), "bad_topic"),
        ("owntracks/jane/phone/event", body(LOCATION), "bad_topic"),
        ("owntracks//phone", body(LOCATION), "bad_topic"),
        ("owntracks/jane/pho\nne", body(LOCATION), "bad_topic"),
        (TOPIC, b"{not json", "malformed_json"),
        (TOPIC, b"[1, 2]", "malformed_json"),
        (TOPIC, b'{"lat": 1.0}', "invalid_fields"),
        (TOPIC, b'{"_type": 7}', "invalid_fields"),
        (TOPIC, body({**LOCATION, "lat": 91.0}), "invalid_fields"),
        (TOPIC, body({k: v for k, v in LOCATION.items() if k != "tst"}), "invalid_fields"),
        (TOPIC, body({**LOCATION, "pad": "x" * 5000}), "too_large"),
        (TOPIC, body({"_type": "encrypted", "data": "7ctHvV0hB4rJ1Ys0"}), "encrypted"),
        (TOPIC, body({"_type": "something-new"}), "unknown_type"),
        (TOPIC, body({**LOCATION, "_type": "Location"}), "unknown_type"),
    ],
)
def test_what_is_not_an_owntracks_message_is_refused_with_a_reason(
    topic: str, payload: bytes, reason: str
) -> None:
    assert reason_of(topic, payload) == reason


def test_topics() -> None:
    assert is_owntracks(TOPIC)
    assert not is_owntracks("ck/a/cg/b/loc")
    assert device_of("owntracks/jane.doe@x/Pixel-7_a") == OwnTracksDevice("jane.doe@x", "Pixel-7_a")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@given(
    st.dictionaries(
        st.sampled_from(["_type", "lat", "lon", "tst", "acc", "batt", "vel", "cog", "x"]),
        json_values | st.sampled_from(["location", "lwt", "card"]),
    )
)
def test_only_rejections_escape_the_parser(doc: dict[str, Any]) -> None:
    try:
        payload = orjson.dumps(doc)
    except TypeError:
        return  # not JSON at all (e.g. an integer beyond 64 bits)
    with contextlib.suppress(RejectedPayload):
        parse(TOPIC, payload, LIMITS)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_refused_or_read(payload: bytes) -> None:
    with contextlib.suppress(RejectedPayload):
        parse(TOPIC, payload, LIMITS)
