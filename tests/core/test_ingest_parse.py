"""Pure ingest parsing: MQTT topic and payload in, a Fix / DeviceEvent or a RejectedPayload out."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest import owntracks as owntracks_app
from ingest.parse import (
    DEAD_LETTER_PAYLOAD_CHARS,
    MAX_DEPTH,
    Limits,
    Route,
    dead_letter,
    parse_device_event,
    parse_location,
    parse_presence,
    route,
)
from kernel.errors import RejectedPayload

NOW = 1_700_000_000.0
LIMITS = Limits()
LOC_TOPIC = "ck/ag-1/cg/cg.7/loc"
EVT_TOPIC = "ck/ag-1/dev/pendant_3/evt"
LOC_ROUTE = Route("loc", "ag-1", "cg.7")
EVT_ROUTE = Route("evt", "ag-1", "pendant_3")
TST = int(NOW) - 5


def owntracks(**changes: Any) -> dict[str, Any]:
    """A location exactly as OwnTracks documents it; a change of ``None`` drops the field."""
    doc: dict[str, Any] = {
        "_type": "location",
        "tid": "ab",
        "lat": 53.8008,
        "lon": -1.5491,
        "tst": TST,
        "acc": 12,
        "batt": 81,
        "vel": 4,
        "cog": 270,
        "alt": 63,
        "conn": "w",
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def device_event(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": "fall", "ts": NOW - 1.25, "seq": 42, "data": {}}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def raw(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


def deep_raw(doc: dict[str, Any]) -> bytes:
    """Like :func:`raw`, at any depth (orjson writes no deeper than 254 levels)."""
    return json.dumps(doc, separators=(",", ":")).encode()


def rejection(call: Any, *args: Any) -> str:
    with pytest.raises(RejectedPayload) as info:
        call(*args)
    return info.value.reason


# ---------------------------------------------------------------- topics


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("ck/ag-1/cg/cg.7/loc", Route("loc", "ag-1", "cg.7")),
        ("ck/ag-1/dev/pendant_3/evt", Route("evt", "ag-1", "pendant_3")),
        ("ck/A/dev/d/tel", Route("tel", "A", "d")),
        ("ck/a/dev/d/status", Route("status", "a", "d")),
        ("ck/a/cg/c/status", Route("presence", "a", "c")),
        (f"ck/{'a' * 64}/cg/{'b' * 64}/loc", Route("loc", "a" * 64, "b" * 64)),
    ],
)
def test_route_accepts_v1_topics(topic: str, expected: Route) -> None:
    assert route(topic) == expected


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "ck",
        "ck/a/cg/b",
        "ck/a/cg/b/loc/extra",
        "/ck/a/cg/b/loc",
        "ck/a/cg/b/loc/",
        "xx/a/cg/b/loc",
        "ck//cg/b/loc",
        "ck/a/cg//loc",
        "ck/a/patient/b/loc",
        "ck/a/cg/b/evt",  # caregivers publish only locations
        "ck/a/dev/b/loc",  # devices publish no locations
        "ck/a/dev/b/unknown",
        "ck/a+/cg/b/loc",
        "ck/a/cg/+/loc",
        "ck/a/cg/#/loc",
        "ck/a/cg/b c/loc",
        "ck/a b/cg/b/loc",
        f"ck/a/cg/{'b' * 65}/loc",
        f"ck/{'a' * 65}/cg/b/loc",
        "ck/a/cg/b/LOC",
        "ck/a/cg/b/loc\n",
    ],
)
def test_route_rejects_bad_topics(topic: str) -> None:
    with pytest.raises(RejectedPayload) as info:
        route(topic)
    assert info.value.reason == "bad_topic"
    assert info.value.topic == topic


# ---------------------------------------------------------------- locations


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            owntracks(),
            {"lat": 53.8008, "lon": -1.5491, "ts": float(TST), "acc": 12.0, "batt": 81, "vel": 4.0},
        ),
        (
            owntracks(acc=None, batt=None, vel=None, cog=None, alt=None, conn=None, tid=None),
            {"acc": None, "batt": None, "vel": None},
        ),
        (owntracks(_type=None), {"lat": 53.8008}),  # _type defaults to "location"
        (owntracks(t="u", m=1, BSSID="aa:bb", topic="owntracks/x/y"), {"lon": -1.5491}),
        (owntracks(lat=-90, lon=180, batt=0, acc=0), {"lat": -90.0, "lon": 180.0, "batt": 0}),
        (owntracks(lat=90, lon=-180, batt=100), {"lat": 90.0, "lon": -180.0, "batt": 100}),
        (owntracks(tst=int(NOW) + 30), {"ts": NOW + 30}),  # within the allowed clock skew
        (owntracks(tst=int(NOW) - 86_400 * 30), {"ts": NOW - 86_400 * 30}),  # no too_old
    ],
)
def test_parse_location_accepts_owntracks(doc: dict[str, Any], expected: dict[str, Any]) -> None:
    fix = parse_location(LOC_ROUTE, LOC_TOPIC, raw(doc), NOW, LIMITS)
    assert fix.event_id == f"cg.7:{doc['tst']}"
    assert (fix.agency_id, fix.caregiver_id, fix.received_at) == ("ag-1", "cg.7", NOW)
    assert {k: getattr(fix, k) for k in expected} == expected


def test_same_fix_twice_has_the_same_event_id() -> None:
    payload = raw(owntracks())
    first = parse_location(LOC_ROUTE, LOC_TOPIC, payload, NOW, LIMITS)
    again = parse_location(LOC_ROUTE, LOC_TOPIC, payload, NOW + 30, LIMITS)
    assert first.event_id == again.event_id


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"x" * (LIMITS.max_payload_bytes + 1), "too_large"),
        (raw(owntracks(pad="p" * LIMITS.max_payload_bytes)), "too_large"),
        (b"", "malformed_json"),
        (b"not json", "malformed_json"),
        (b'{"lat": 1,', "malformed_json"),
        (b"[1, 2]", "malformed_json"),
        (b'"location"', "malformed_json"),
        (b"null", "malformed_json"),
        (b"\xff\xfe{}", "malformed_json"),
        (b'{"_type": "location", "lat": "\xc3\x28"}', "malformed_json"),
        (b'{"lat": NaN, "lon": 1, "tst": 5}', "malformed_json"),  # orjson refuses bare NaN
        (b'{"lat": 1e400, "lon": 1, "tst": 5}', "malformed_json"),  # infinity
        (raw(owntracks(lat=None)), "invalid_fields"),
        (raw(owntracks(lon=None)), "invalid_fields"),
        (raw(owntracks(tst=None)), "invalid_fields"),
        (raw(owntracks(lat=91)), "invalid_fields"),
        (raw(owntracks(lat=-90.0001)), "invalid_fields"),
        (raw(owntracks(lon=-181)), "invalid_fields"),
        (raw(owntracks(lon=180.5)), "invalid_fields"),
        (raw(owntracks(lat="NaN")), "invalid_fields"),  # a string NaN gets past JSON
        (raw(owntracks(lon="Infinity")), "invalid_fields"),
        (raw(owntracks(lat="north")), "invalid_fields"),
        (raw(owntracks(acc=-1)), "invalid_fields"),
        (raw(owntracks(vel=-0.5)), "invalid_fields"),
        (raw(owntracks(batt=101)), "invalid_fields"),
        (raw(owntracks(batt=-1)), "invalid_fields"),
        (raw(owntracks(tst=0)), "invalid_fields"),
        (raw(owntracks(tst=TST + 0.5)), "invalid_fields"),
        (raw(owntracks(_type="waypoint")), "invalid_fields"),
        (raw(owntracks(tst=int(NOW) + 31)), "from_future"),  # would stand as her newest
    ],
)
def test_parse_location_rejects(payload: bytes, reason: str) -> None:
    with pytest.raises(RejectedPayload) as info:
        parse_location(LOC_ROUTE, LOC_TOPIC, payload, NOW, LIMITS)
    assert info.value.reason == reason
    assert info.value.topic == LOC_TOPIC


def test_limits_are_configurable() -> None:
    tight = Limits(max_payload_bytes=16, max_clock_skew_s=10.0)
    assert rejection(parse_location, LOC_ROUTE, LOC_TOPIC, raw(owntracks()), NOW, tight) == (
        "too_large"
    )
    small = raw({"lat": 1, "lon": 2, "tst": int(NOW) + 11})
    loose = Limits(max_payload_bytes=len(small), max_fix_ahead_s=10.0)
    assert rejection(parse_location, LOC_ROUTE, LOC_TOPIC, small, NOW, loose) == "from_future"


# ---------------------------------------------------------------- device events


@pytest.mark.parametrize(
    ("doc", "published_at"),
    [
        (device_event(), None),
        (device_event(type="sos", data={"sent_at": NOW - 1.0, "battery": 50}), NOW - 1.0),
        (device_event(type="dose_missed", data={"sent_at": "yesterday"}), None),
        (device_event(type="door_open", data=None), None),
        (device_event(seq=0, ts=NOW + 300), None),
        (device_event(ts=NOW - 300), None),
    ],
)
def test_parse_device_event_accepts(doc: dict[str, Any], published_at: float | None) -> None:
    ev = parse_device_event(EVT_ROUTE, EVT_TOPIC, raw(doc), NOW, LIMITS)
    assert ev.event_id == f"pendant_3:{doc['seq']}:{round(doc['ts'] * 1000)}"
    assert (ev.agency_id, ev.device_id, ev.type, ev.seq) == (
        "ag-1",
        "pendant_3",
        doc["type"],
        doc["seq"],
    )
    assert ev.ts == doc["ts"]
    assert ev.published_at == published_at
    assert ev.received_at == NOW


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{" + b" " * LIMITS.max_payload_bytes + b"}", "too_large"),
        (b"\x00\x01", "malformed_json"),
        (b"[]", "malformed_json"),
        (raw(device_event(type="explosion")), "invalid_fields"),
        (raw(device_event(type=None)), "invalid_fields"),
        (raw(device_event(ts=None)), "invalid_fields"),
        (raw(device_event(seq=None)), "invalid_fields"),
        (raw(device_event(seq=-1)), "invalid_fields"),
        (raw(device_event(ts="NaN")), "invalid_fields"),
        (raw(device_event(data=[1, 2])), "invalid_fields"),
        (raw(device_event(extra=1)), "invalid_fields"),  # device payloads are closed
        (raw(device_event(ts=NOW + 301)), "from_future"),
        (raw(device_event(ts=NOW - 301)), "too_old"),
    ],
)
def test_parse_device_event_rejects(payload: bytes, reason: str) -> None:
    with pytest.raises(RejectedPayload) as info:
        parse_device_event(EVT_ROUTE, EVT_TOPIC, payload, NOW, LIMITS)
    assert info.value.reason == reason
    assert info.value.topic == EVT_TOPIC


def nested(levels: int, shapes: str = "d") -> Any:
    """A JSON value ``levels`` deep: level i an object (``d``) or an array (``l``), by
    ``shapes`` in turn, around an empty object."""
    value: Any = {}
    for i in reversed(range(levels - 1)):
        value = {"a": value} if shapes[i % len(shapes)] == "d" else [value]
    return value


@pytest.mark.parametrize("shapes", ["d", "l", "dl", "lld"])
@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 360])
def test_a_device_event_nested_too_deep_is_refused(levels: int, shapes: str) -> None:
    """Its data validates as a dict, but JSON that deep cannot be written out again."""
    payload = deep_raw(device_event(data={"a": nested(levels - 2, shapes)}))  # payload, data
    assert len(payload) < LIMITS.max_payload_bytes
    with pytest.raises(RejectedPayload) as info:
        parse_device_event(EVT_ROUTE, EVT_TOPIC, payload, NOW, LIMITS)
    assert (info.value.reason, info.value.topic) == ("too_deep", EVT_TOPIC)
    assert str(MAX_DEPTH) in info.value.detail


@pytest.mark.parametrize("shapes", ["d", "l", "dl"])
def test_a_device_event_nested_as_deep_as_allowed_is_taken(shapes: str) -> None:
    payload = raw(device_event(data={"a": nested(MAX_DEPTH - 2, shapes)}))
    ev = parse_device_event(EVT_ROUTE, EVT_TOPIC, payload, NOW, LIMITS)
    assert orjson.loads(ev.model_dump_json())["data"] == orjson.loads(payload)["data"]


def test_brackets_in_strings_are_no_nesting() -> None:
    payload = raw(device_event(data={"note": "{[" * 200}))
    ev = parse_device_event(EVT_ROUTE, EVT_TOPIC, payload, NOW, LIMITS)
    assert ev.data == {"note": "{[" * 200}


def test_locations_nested_too_deep_are_refused() -> None:
    """Phones' locations keep extra fields, so they are measured too."""
    payload = deep_raw(owntracks(extra=nested(300, "dl")))
    assert rejection(parse_location, LOC_ROUTE, LOC_TOPIC, payload, NOW, LIMITS) == "too_deep"
    topic = "owntracks/jane/phone"
    assert rejection(owntracks_app.parse, topic, payload, LIMITS) == "too_deep"


# ---------------------------------------------------------------- dead letters


@pytest.mark.parametrize(
    "payload",
    [
        b"{" + b"x" * 5000,
        "é".encode() * 1000,
        b"\xff" * 2000,
        b"short",
    ],
)
def test_dead_letter_truncates_and_keeps_the_reason(payload: bytes) -> None:
    with pytest.raises(RejectedPayload) as info:
        parse_location(LOC_ROUTE, LOC_TOPIC, payload, NOW, Limits(max_payload_bytes=10_000))
    letter = dead_letter(info.value, payload, NOW)
    assert letter.reason == info.value.reason == "malformed_json"
    assert letter.source == LOC_TOPIC
    assert letter.received_at == NOW
    assert len(letter.payload) <= DEAD_LETTER_PAYLOAD_CHARS
    expected = payload[:DEAD_LETTER_PAYLOAD_CHARS].decode("utf-8", "replace")
    assert letter.payload == expected
    assert len(letter.detail) <= 500


def test_dead_letter_truncates_detail_and_source() -> None:
    exc = RejectedPayload("bad_topic", "d" * 2000, topic="t" * 1000)
    letter = dead_letter(exc, b"{}", NOW)
    assert (letter.reason, letter.detail, letter.source) == ("bad_topic", "d" * 500, "t" * 300)


# ---------------------------------------------------------------- fuzzing contract

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
FIELD_NAMES = st.sampled_from(
    ["_type", "lat", "lon", "tst", "acc", "vel", "cog", "batt", "alt", "type", "ts", "seq", "data"]
)
OBJECTS = st.dictionaries(FIELD_NAMES | st.text(max_size=8), JSON_VALUES, max_size=10).map(
    lambda d: json.dumps(d).encode()  # json allows NaN, Infinity and huge ints: orjson must cope
)
ID_PARTS = st.sampled_from(["a", "cg-1", "x.y", "+", "#", "", "a b", "ü"]) | st.text(max_size=70)
TOPICS = st.text(max_size=120) | st.builds(
    lambda a, who, s, kind: f"ck/{a}/{who}/{s}/{kind}",
    ID_PARTS,
    st.sampled_from(["cg", "dev", "x"]),
    ID_PARTS,
    st.sampled_from(["loc", "evt", "tel", "status"]) | st.text(max_size=8),
)


def parse_all(topic: str, payload: bytes, now: float) -> None:
    """Everything ingest calls on one message; only RejectedPayload may escape."""
    for step in (
        lambda: route(topic),
        lambda: parse_location(LOC_ROUTE, topic, payload, now, LIMITS),
        lambda: parse_device_event(EVT_ROUTE, topic, payload, now, LIMITS),
    ):
        try:
            step()
        except RejectedPayload as exc:
            dead_letter(exc, payload, now)


@given(
    topic=TOPICS,
    payload=st.binary(max_size=LIMITS.max_payload_bytes + 8) | OBJECTS,
    now=st.floats(min_value=0, max_value=4e9),
)
def test_only_rejected_payload_escapes(topic: str, payload: bytes, now: float) -> None:
    parse_all(topic, payload, now)


@given(doc=st.fixed_dictionaries({}, optional={k: JSON_VALUES for k in owntracks()}))
def test_owntracks_shaped_objects_parse_or_reject(doc: dict[str, Any]) -> None:
    parse_all(LOC_TOPIC, json.dumps(doc).encode(), NOW)


DEEP_VALUES = st.builds(
    nested, st.integers(min_value=1, max_value=400), st.text(alphabet="dl", min_size=1, max_size=4)
)
DEVICE_EVENTS = st.fixed_dictionaries(
    {"type": st.just("fall"), "ts": st.just(NOW - 1.0), "seq": st.integers(min_value=0)},
    optional={"data": st.dictionaries(st.text(max_size=8), JSON_VALUES | DEEP_VALUES, max_size=3)},
)


@given(payload=DEVICE_EVENTS.map(deep_raw) | OBJECTS)
def test_whatever_validates_as_a_device_event_serialises(payload: bytes) -> None:
    """What ingest hands Kafka is written out again: a refusal is the only other answer."""
    try:
        ev = parse_device_event(EVT_ROUTE, EVT_TOPIC, payload, NOW, LIMITS)
    except RejectedPayload:
        return
    assert orjson.loads(ev.model_dump_json())["data"] == ev.data
    orjson.dumps(ev.model_dump())


@pytest.mark.parametrize(
    ("payload", "online"), [(b"online", True), (b"offline", False), (b" offline\n", False)]
)
def test_a_phones_status(payload: bytes, online: bool) -> None:
    assert parse_presence("ck/a/cg/c/status", payload) is online


@pytest.mark.parametrize("payload", [b"", b"away", b'{"state": "offline"}', b"OFFLINE"])
def test_a_phones_status_is_online_or_offline(payload: bytes) -> None:
    with pytest.raises(RejectedPayload) as raised:
        parse_presence("ck/a/cg/c/status", payload)
    assert raised.value.reason == "bad_status"
