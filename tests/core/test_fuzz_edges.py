"""Every parser at the edges, under hypothesis: any bytes, and near-valid inputs (valid documents
with fields mutated, nested deep, numbers huge or not numbers at all, text that is not UTF-8 or
has lone surrogates, payloads cut short or bytes flipped). Only the project's typed errors
escape, and whatever validates also serialises (the laws of :mod:`careknot.bench.fuzz_targets`,
which ``careknot bench fuzz`` runs under atheris for a million inputs).

Short and deterministic: a fixed number of examples each, derandomized."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.mqtt.frames import Publish
from adapters.mqtt.wire import remaining_length
from careknot.bench import fuzz_targets, options
from careknot.bench.fuzz_targets import (
    BLOOD_PRESSURE,
    CLAIMS,
    DEVICE_EVENT,
    DEVICE_STATUS_TOPIC,
    DOSE_EVENT,
    EVT_TOPIC,
    FULL_HEARTBEAT,
    HEARTBEAT,
    LOC_TOPIC,
    LOCATION,
    NOW,
    OWNTRACKS_LWT,
    OWNTRACKS_OTHER,
    OWNTRACKS_TOPIC,
    PLAIN_LOCATION,
    RING,
    STATUS_TOPIC,
    TARGETS,
    TEL_TOPIC,
    TELEMETRY,
    TELEMETRY_BATCH,
    TST,
    WS_FRAMES,
    Breach,
    encode_publish,
    ingest_target,
    signed,
)
from ingest.owntracks import KNOWN_TYPES
from ingest.parse import MAX_DEPTH, TELEMETRY_MAX_AGE_S
from kernel.contracts import DEVICE_EVENT_TYPES, TELEMETRY_BATCH_MAX, DeviceEvent, FixEvent
from kernel.errors import RejectedInput
from kernel.tokens import Claims, issue, verify
from ws_gateway.session import COMMAND_TYPES, parse_frame

EXAMPLES = settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------- JSON, near valid


class Raw(bytes):
    """JSON text written as it is: what no encoder writes (NaN, 1e400, bad UTF-8...)."""


def encode(value: object) -> bytes:
    """``value`` as JSON text; :class:`Raw` parts as they are, lone surrogates as ``\\udXXX``."""
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, dict):
        items = (encode(str(k)) + b":" + encode(v) for k, v in value.items())
        return b"{" + b",".join(items) + b"}"
    if isinstance(value, list | tuple):
        return b"[" + b",".join(encode(v) for v in value) + b"]"
    return json.dumps(value).encode()  # NaN and Infinity as JavaScript writes them


ODD_TOKENS = (
    b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1e-400", b"-0", b"-0.0", b"1E+2",
    b"123456789012345678901234567890", b"-9223372036854775809", b"18446744073709551615",
    b"18446744073709551616", b"9" * 400, b"01", b"+1", b".5", b"5.", b"0x1F", b"true1",
    b'"\xff"', b'"\xed\xa0\x80"', b'"\\ud800"', b'"\\udfff\\ud800"', b'"\\u0000"', b'"a\x00b"',
    b'"\xc0\xaf"', b'"\\ud83d\\ude00"', b'"\xf0\x9f\x98\x80"', b'"\\"', b"'single'",
)  # fmt: skip
any_text = st.text(st.characters(exclude_categories=()), max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | any_text
    | st.sampled_from(ODD_TOKENS).map(Raw)
)
values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(any_text, kids, max_size=4),
    max_leaves=10,
)


def nested(depth: int, in_objects: bool) -> Raw:
    """A value ``depth`` levels of arrays (or objects) deep."""
    if in_objects:
        return Raw(b'{"a":' * depth + b"1" + b"}" * depth)
    return Raw(b"[" * depth + b"1" + b"]" * depth)


deep = st.builds(
    nested,
    st.sampled_from([MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, 254, 255, 600, 1023, 1024, 2000])
    | st.integers(1, 300),
    st.booleans(),
)


@st.composite
def mangled(draw: st.DrawFn, text: bytes) -> bytes:
    """``text`` as it is (mostly), cut short, a byte changed, or wrapped in something else."""
    how = draw(st.integers(0, 9))
    if how == 6:
        return text[: draw(st.integers(0, len(text)))]
    if how == 7 and text:
        at = draw(st.integers(0, len(text) - 1))
        return text[:at] + bytes([draw(st.integers(0, 255))]) + text[at + 1 :]
    if how == 8:
        template = draw(st.sampled_from([b"[%s]", b"\xef\xbb\xbf%s", b" \n%s\t", b"%s,%s"]))
        return template.replace(b"%s", text)
    return text


def near_valid(bases: list[dict[str, Any]], fields: dict[str, st.SearchStrategy[Any]]) -> Any:
    """Strategy: one of ``bases`` with up to three fields dropped or set to a value of their
    own kind near its bounds, any JSON value or a deep one, encoded and maybe mangled."""
    return near_valid_documents(bases, fields).map(encode).flatmap(mangled)


def near_valid_documents(
    bases: list[dict[str, Any]], fields: dict[str, st.SearchStrategy[Any]]
) -> Any:
    """Strategy: :func:`near_valid`'s documents before they are encoded (to put in others)."""

    @st.composite
    def documents(draw: st.DrawFn) -> dict[str, Any]:
        doc = dict(draw(st.sampled_from(bases)))
        for _ in range(draw(st.integers(0, 3))):
            name = draw(st.sampled_from(sorted(fields)) if draw(st.integers(0, 3)) else any_text)
            how = draw(st.integers(0, 9))
            if how == 0:
                doc.pop(name, None)
            else:  # mostly a value of the field's own kind
                doc[name] = draw(values if how == 1 else deep if how == 2 else own(name))
        return doc

    def own(name: str) -> st.SearchStrategy[Any]:
        return fields.get(name, values)

    return documents()


def sized(low: int, high: int, letter: str = "x") -> st.SearchStrategy[str]:
    """Text of a length in [low, high], cheaply: around the bounds a field checks."""
    return st.integers(low, high).map(lambda n: letter * n) | any_text


NUMBERS_AS_TEXT = ("inf", "-inf", "NaN", "2e+308", "1e400", "-0", " 1 ", "1_000", "0x10")
"""Text pydantic may read as a number where it is lax: infinities among them."""


def numbers(low: float, high: float, *edges: float) -> st.SearchStrategy[Any]:
    """Numbers in [low, high] and at ``edges``, and the same or odd ones written as text."""
    near = st.floats(low, high) | st.integers(int(low), int(high))
    near |= st.sampled_from(edges or (low, high))
    return st.one_of(near, near, near.map(str), st.sampled_from(NUMBERS_AS_TEXT))


POSITION = {
    "lat": numbers(-91, 91, 90, -90, 90.0000001, -90.0000001, -0.0),
    "lon": numbers(-181, 181, 180, -180, 180.0000001),
    "tst": st.integers(-2, int(NOW) + 400)
    | st.sampled_from([TST, int(NOW) + 300, int(NOW) + 301, 0, 2**63, 2**64, float(TST), str(TST)]),
    "acc": numbers(-1, 1e6, -0.0, 0, -1e-300),
    "vel": numbers(-1, 1e4, -0.0, 1e308),
    "cog": numbers(-720, 720),
    "alt": numbers(-500, 1e5),
    "batt": numbers(-1, 101, 100.0, 100.5, True),
    "_type": st.sampled_from(sorted(KNOWN_TYPES | {"Location", "", "other"})) | values,
}
SEQ_EDGES = (0, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30)
"""Around the widest integers orjson writes and Postgres keeps (a ``bigint``)."""
seq_edges = st.sampled_from(SEQ_EDGES)
seqs = st.one_of(  # pydantic reads an integer written as text where it is lax
    st.integers(-1, 2**65), seq_edges, st.integers(-1, 2**65).map(str), seq_edges.map(str)
)
EVENT = {
    "type": st.sampled_from([*DEVICE_EVENT_TYPES, "tel", "FALL", ""]),
    "ts": numbers(NOW - 400, NOW + 400, NOW + 300, NOW - 300, NOW + 300.001, NOW - 300.001),
    "seq": seqs,
    "data": st.dictionaries(any_text, values, max_size=4)
    | st.builds(lambda v: {"sent_at": v}, values)
    | st.integers(MAX_DEPTH - 3, MAX_DEPTH + 1).map(lambda d: nested(d, True)),
}
READING_EDGES: dict[str, tuple[Any, ...]] = {
    "ts": (
        NOW + 300, NOW + 300.001, NOW - TELEMETRY_MAX_AGE_S, NOW - TELEMETRY_MAX_AGE_S - 0.001,
        1e308, 5e-324,
    ),
    "hr": (20, 250, 19.999, 250.001),
    "spo2": (50, 100, 49.999, 100.001),
    "temp": (25, 45, 24.999, 45.001),
    "bp_sys": (50, 280, 49.999, 280.001, 84),  # 84: no higher than a base's diastolic
    "bp_dia": (20, 180, 19.999, 180.001, 128),  # 128: no lower than a base's systolic
    "battery": (0, 100, -1, 101, 100.5, True),
    "rssi": (-0.0, 1e308, -1e308),
}  # fmt: skip
"""Where a sample's fields turn from taken to refused: a plausible value's bounds, the window
of time, the widest floats."""
READING = {
    "ts": numbers(NOW - TELEMETRY_MAX_AGE_S - 100, NOW + 400, *READING_EDGES["ts"]),
    "seq": seqs,
    "hr": numbers(0, 300, *READING_EDGES["hr"]),
    "spo2": numbers(0, 120, *READING_EDGES["spo2"]),
    "temp": numbers(0, 60, *READING_EDGES["temp"]),
    "bp_sys": numbers(0, 400, *READING_EDGES["bp_sys"]),
    "bp_dia": numbers(0, 300, *READING_EDGES["bp_dia"]),
    "battery": numbers(-1, 101, *READING_EDGES["battery"]),
    "rssi": numbers(-300, 100, *READING_EDGES["rssi"]),
}
BARE_READING = {"ts": NOW - 1, "seq": 1}
"""A sample saying nothing (no vital, no battery, no signal)."""
READINGS = [TELEMETRY, BLOOD_PRESSURE, *TELEMETRY_BATCH["samples"], BARE_READING]
reading_docs = near_valid_documents(READINGS, READING)
TELEMETRY_FIELDS = READING | {
    "samples": st.lists(reading_docs, max_size=4)
    | st.integers(TELEMETRY_BATCH_MAX - 1, TELEMETRY_BATCH_MAX + 1).map(lambda n: [TELEMETRY] * n)
}
HEARTBEAT_EDGES: dict[str, tuple[Any, ...]] = {
    "ts": (NOW + 300, NOW + 300.001, 1e308, 5e-324),
    "battery": (0, 100, -1, 101, 100.5, True),
    "rssi": (-200, 50, -200.001, 50.001),
    "interval": (86_400, 86_400.001, 5e-324, 0),
}
HEARTBEAT_FIELDS = {
    "ts": numbers(NOW - 400, NOW + 400, *HEARTBEAT_EDGES["ts"]),
    "battery": numbers(-1, 101, *HEARTBEAT_EDGES["battery"]),
    "rssi": numbers(-201, 51, *HEARTBEAT_EDGES["rssi"]),
    "firmware": sized(0, 70),
    "interval": numbers(-1, 90_000, *HEARTBEAT_EDGES["interval"]),
    "tamper": st.booleans() | st.sampled_from(["yes", "off", 1, 2, "true"]),
}
ADMINISTRATION_EDGES: dict[str, tuple[Any, ...]] = {
    "given_at": (0, 5e-324, 1e308, NOW, "inf", "NaN"),
    "dose_key": ("", "k" * 200, "k" * 201),
    "note": ("n" * 500, "n" * 501, None),
}
FRAME = {
    "type": st.sampled_from([*sorted(COMMAND_TYPES), "Auth", "pong", ""]),
    "token": sized(0, 4200),
    "last_seq": st.integers(-1, 2**70),
    "offer_id": sized(0, 130),
    "incident_id": sized(0, 130),
    "caregiver_id": sized(0, 130),
    "reason": sized(0, 510),
    "note": sized(0, 510),
    "alarm_id": sized(0, 130),
    "record_id": sized(0, 130),
    "patient_id": sized(0, 130),
    "dose_key": sized(0, 210),
    "action": st.sampled_from(["administered", "refused", "unavailable", "given", ""]),
    "given_at": numbers(-1, NOW + 100, *ADMINISTRATION_EDGES["given_at"]),
}
CLAIM = {
    "role": st.sampled_from(["caregiver", "family", "dispatcher", "admin", ""]),
    "sub": sized(0, 130),
    "agency": sized(0, 130),
    "exp": numbers(NOW - 10, NOW + 10, NOW, 1e308, 2**64),
    "patients": st.lists(any_text, max_size=3),
}

# ---------------------------------------------------------------- topics, streams, tokens

segments = st.sampled_from(
    ["ck", "owntracks", "cg", "dev", "loc", "status", "evt", "tel", "ag-1", "cg.7", "", "+", "#",
     "a" * 64, "a" * 65, "é", "\x00", "\ufffd", "ann@home", "x y"]
) | any_text  # fmt: skip


@st.composite
def topics(draw: st.DrawFn) -> bytes:
    """A topic ingest takes, with up to two of its levels changed, one added or one dropped."""
    levels = draw(st.sampled_from(TOPICS)).split("/")
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(levels) - 1))
        levels[at] = draw(segments)
    edit = draw(st.integers(0, 5))
    if edit == 0:
        levels.insert(draw(st.integers(0, len(levels))), draw(segments))
    elif edit == 1:
        levels.pop(draw(st.integers(0, len(levels) - 1)))
    return "/".join(levels).encode("utf-8", "surrogatepass")


TOPICS = [LOC_TOPIC, STATUS_TOPIC, EVT_TOPIC, OWNTRACKS_TOPIC, DEVICE_STATUS_TOPIC, TEL_TOPIC]
presences = st.builds(
    lambda before, word, after: before + word + after,
    st.sampled_from([b"", b" ", b"\n", b"\x00", b"\t\r"]),
    st.sampled_from([b"online", b"offline", b"ONLINE", b"on line", b"offlin", b""]),
    st.sampled_from([b"", b" ", b"\n", b"\xff", b"\x0b"]),
) | st.binary(max_size=10)

packets = st.one_of(
    st.builds(
        encode_publish,
        st.builds(
            Publish,
            st.sampled_from([LOC_TOPIC, "owntracks/ann/phone", "é/\ufffd", ""]),
            st.binary(max_size=40),
            st.sampled_from([0, 1]),
            st.integers(0, 65535),
        ),
    ),
    st.builds(
        lambda head, body: bytes([head]) + remaining_length(len(body)) + body,
        st.integers(0, 255),
        st.binary(max_size=12),
    ),
    st.sampled_from(
        [b"\x30\xff\xff\xff\xff\x7f", b"\x30\x03\x00\x09ab", b"\x32\x03\x00\x01a", b"\xd0\x00"]
    ),
    st.binary(max_size=6),
)
streams = st.lists(packets, max_size=8).map(b"".join)


@st.composite
def tokens(draw: st.DrawFn) -> bytes:
    """A genuine token, then maybe a character dropped, changed or added."""
    text = issue(Claims.model_validate(draw(st.sampled_from(CLAIMS))), RING, NOW)
    at = draw(st.integers(0, len(text)))
    edit = draw(st.sampled_from(["", "drop", "change", "add"]))
    extra = draw(st.sampled_from([".", "=", "-", "_", "A", "é", "\x00", "\udc80", "+/"]))
    if edit == "drop":
        text = text[:at] + text[at + 1 :]
    elif edit:
        text = text[:at] + extra + text[at + (edit == "change") :]
    return text.encode("utf-8", "surrogatepass")


def claims_bodies() -> Any:
    return near_valid(list(CLAIMS), CLAIM)


def frames_as_sent() -> Any:
    """A frame's bytes, prefixed as the ws-frame target reads them (even: binary, odd: text)."""
    return st.builds(lambda kind, doc: bytes([kind]) + doc, st.integers(0, 3), WS_NEAR_VALID)


WS_NEAR_VALID = near_valid(list(WS_FRAMES), FRAME)
NEAR_VALID: dict[str, Any] = {
    "location": near_valid([LOCATION, PLAIN_LOCATION], POSITION),
    "device-event": near_valid([DEVICE_EVENT, DOSE_EVENT], EVENT),
    "telemetry": near_valid(
        [TELEMETRY, BLOOD_PRESSURE, TELEMETRY_BATCH, BARE_READING], TELEMETRY_FIELDS
    ),
    "device-status": near_valid([HEARTBEAT, FULL_HEARTBEAT], HEARTBEAT_FIELDS) | presences,
    "presence": presences,
    "owntracks": near_valid([LOCATION, OWNTRACKS_LWT, OWNTRACKS_OTHER], POSITION),
    "topic": topics(),
    "mqtt-frames": streams,
    "ws-frame": frames_as_sent(),
    "token": tokens(),
    "token-claims": claims_bodies(),
}

# ---------------------------------------------------------------- the laws, at every edge


def test_every_target_has_near_valid_inputs_and_is_named_in_the_benchmarks_help() -> None:
    assert set(NEAR_VALID) == set(TARGETS)
    assert tuple(TARGETS) == options.FUZZ_TARGETS


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_seed_is_accepted(name: str) -> None:
    """The fuzzers start from valid inputs (else they would start outside every parser)."""
    target = TARGETS[name]
    assert {target.run(seed) for seed in target.seeds} == {"accepted"}


@pytest.mark.parametrize("name", sorted(TARGETS))
@EXAMPLES
@given(data=st.binary(max_size=600))
def test_any_bytes_only_typed_errors(name: str, data: bytes) -> None:
    TARGETS[name].run(data)


@pytest.mark.parametrize("name", sorted(TARGETS))
@EXAMPLES
@given(data=st.data())
def test_near_valid_inputs_only_typed_errors_and_what_validates_serialises(
    name: str, data: st.DataObject
) -> None:
    TARGETS[name].run(data.draw(NEAR_VALID[name]))


@EXAMPLES
@given(text=any_text | WS_NEAR_VALID.map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_a_frame_of_any_text_is_refused_only_as_rejected_input(text: str) -> None:
    """Even text no WebSocket text frame carries (lone surrogates)."""
    with contextlib.suppress(RejectedInput):
        parse_frame(text)


def at_edges(
    name: str, head: bytes, bases: list[dict[str, Any]], edges: dict[str, tuple[Any, ...]]
) -> list[Any]:
    """Each base with one field at each of its edges, as a number and as text."""
    return [
        pytest.param(name, head + encode({**base, field: v}), id=f"{name}-{field}={v!r:.20}")
        for base in bases
        for field, values in edges.items()
        for value in values
        for v in (value, str(value))
    ]


BOUNDARIES = [
    *at_edges("telemetry", b"", [TELEMETRY, BLOOD_PRESSURE], READING_EDGES),
    pytest.param("telemetry", encode({"samples": [TELEMETRY, BARE_READING]}), id="bare-in-batch"),
    *at_edges("telemetry", b"", [BARE_READING], {"rssi": (None,), "battery": (None,)}),
    *at_edges("device-status", b"", [HEARTBEAT, FULL_HEARTBEAT], HEARTBEAT_EDGES),
    *at_edges("ws-frame", b"\x01", [dict(f) for f in WS_FRAMES[-2:]], ADMINISTRATION_EDGES),
]


@pytest.mark.parametrize(("name", "data"), BOUNDARIES)
def test_a_field_at_its_edge_only_typed_errors_and_what_validates_serialises(
    name: str, data: bytes
) -> None:
    """Where the checks of the telemetry, the device status and the administration frame turn:
    what near-valid inputs reach only sometimes, every time."""
    TARGETS[name].run(data)


# ---------------------------------------------------------------- the laws can be broken


def test_an_untyped_error_escapes() -> None:
    def parse(payload: bytes) -> FixEvent:
        raise KeyError(payload)

    with pytest.raises(KeyError):
        ingest_target("broken", "", parse, [b"x"]).run(b"x")


def fix(**changes: Any) -> FixEvent:
    fields: dict[str, Any] = dict(
        event_id="cg.7:1", agency_id="ag-1", caregiver_id="cg.7", lat=53.8, lon=-1.55, ts=1.0
    )
    return FixEvent.model_construct(**(fields | {"received_at": NOW} | changes))


def test_a_value_that_does_not_read_back_is_a_breach() -> None:
    unreadable = ingest_target("nan", "", lambda _: fix(lat=float("nan")), [b"x"])
    with pytest.raises(Breach, match="does not serialise"):
        unreadable.run(b"x")


def test_a_value_that_reads_back_different_is_a_breach() -> None:
    event = DeviceEvent.model_construct(
        event_id="d:1", agency_id="a", device_id="d", type="fall", ts=NOW, seq=1,
        data={"pair": (1, 2)}, received_at=NOW, published_at=None,
    )  # fmt: skip
    with pytest.raises(Breach, match="reads back different"):
        ingest_target("tuple", "", lambda _: event, [b"x"]).run(b"x")


def test_a_fast_path_that_disagrees_with_the_parser_is_a_breach(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fuzz_targets, "fast_fix", lambda *_: orjson.dumps({"lat": 0}))
    with pytest.raises(Breach, match="fast path"):
        TARGETS["location"].run(orjson.dumps(LOCATION))
    with pytest.raises(Breach, match="fast path took"):
        TARGETS["location"].run(b"{}")


def test_a_token_signed_with_the_key_is_genuine() -> None:
    """The token-claims target signs as the issuer does, so its claims are really decoded."""
    claims = Claims.model_validate(CLAIMS[0])
    assert verify(signed(orjson.dumps(claims.model_dump())), RING, NOW) == claims


# ---------------------------------------------------------------- found by fuzzing

WIDE = [2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30]
COUNTERS = [
    ("device-event", b"", DEVICE_EVENT, "seq"),
    ("telemetry", b"", TELEMETRY, "seq"),
    ("telemetry", b"", BLOOD_PRESSURE, "battery"),
    ("device-status", b"", HEARTBEAT, "battery"),
    ("location", b"", PLAIN_LOCATION, "tst"),
    ("ws-frame", b"\x00", {"type": "resume", "last_seq": 1}, "last_seq"),
    ("ws-frame", b"\x01", {"type": "resume", "last_seq": 1}, "epoch"),
]


@pytest.mark.parametrize(("name", "head", "base", "field"), COUNTERS)
@pytest.mark.parametrize("value", WIDE)
@pytest.mark.parametrize("as_text", [False, True])
def test_an_integer_wider_than_64_bits_is_refused_or_serialises(
    name: str, head: bytes, base: dict[str, Any], field: str, value: int, as_text: bool
) -> None:
    """A ``seq`` written as the text of an integer past 64 bits was taken (pydantic is lax),
    and orjson could not write the event out again, nor a resume frame read back."""
    written = encode({**base, field: str(value) if as_text else value})
    TARGETS[name].run(head + written)


@pytest.mark.parametrize(
    ("name", "base"), [("device-event", DEVICE_EVENT), ("telemetry", TELEMETRY)]
)
def test_a_device_counter_past_a_postgres_bigint_is_refused(
    name: str, base: dict[str, Any]
) -> None:
    assert TARGETS[name].run(orjson.dumps({**base, "seq": 2**63 - 1})) == "accepted"
    for seq in (2**63, 2**64 - 1, str(2**63)):
        assert TARGETS[name].run(orjson.dumps({**base, "seq": seq})) == "invalid_fields"


def test_a_resume_past_a_signed_64_bit_counter_is_refused() -> None:
    for frame in (
        {"type": "resume", "last_seq": 2**63},
        {"type": "resume", "last_seq": 0, "epoch": 2**63},
    ):
        with pytest.raises(RejectedInput):
            parse_frame(orjson.dumps(frame))
