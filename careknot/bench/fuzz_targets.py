"""The system's parsers at its edges as fuzz targets: bytes in, an outcome out, two laws kept.

1. Only the project's typed errors escape. Ingest's parsers refuse with
   :class:`~kernel.errors.RejectedPayload`, the gateway's frame parser with
   :class:`~kernel.errors.RejectedInput`, a token with :class:`~kernel.errors.AuthError`, and the
   MQTT framing refuses nothing (what it cannot frame it passes on); anything else escaping a
   target is a bug, and escapes as it was raised.
2. Whatever validates also serialises. What a parser accepts is written out the way the system
   writes it (``model_dump_json``, orjson) and read back equal; what it refuses makes the dead
   letter or error frame the system writes for it. A breach raises :class:`Breach`.

Each target takes what its edge can deliver: a payload's bytes, a topic as the MQTT framing
decodes it (undecodable UTF-8 replaced), a WebSocket frame as bytes or as the text of a text
frame, a token as text. Its ``seeds`` are valid inputs the fuzzers start from, and its
``words`` the tokens a mutating fuzzer is given to splice in. ``careknot bench fuzz`` runs the
targets under atheris; ``tests/core/test_fuzz_edges.py`` runs them under hypothesis.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from jwt import api_jws as jws
from pydantic import BaseModel

from adapters.mqtt.frames import Publish, PublishSplitter
from adapters.mqtt.wire import remaining_length, string
from ingest import owntracks
from ingest.fast_path import fast_fix, fast_reading
from ingest.parse import (
    TELEMETRY_MAX_AGE_S,
    Limits,
    Route,
    dead_letter,
    location_fix,
    parse_device_event,
    parse_device_status,
    parse_location,
    parse_presence,
    parse_telemetry,
    presence_notice,
    route,
)
from kernel.contracts import (
    DeadLetter,
    DeviceEvent,
    DeviceStatus,
    FixEvent,
    TelemetrySample,
    vitals_of,
)
from kernel.errors import AuthError, RejectedInput, RejectedPayload
from kernel.tokens import ALGORITHM, Claims, Keyring, TokenKey, issue, verify
from vitals.measures import implausible
from ws_gateway.session import COMMAND_TYPES, error_frame, parse_frame

NOW = 1_700_000_000.0
TST = int(NOW) - 5
LIMITS = Limits()
SECRET = "fuzzing-secret-of-thirty-two-bytes-at-least"
KID = "fz1"
RING = Keyring((TokenKey(KID, SECRET),))
LOC_TOPIC = "ck/ag-1/cg/cg.7/loc"
STATUS_TOPIC = "ck/ag-1/cg/cg.7/status"
EVT_TOPIC = "ck/ag-1/dev/pendant_3/evt"
TEL_TOPIC = "ck/ag-1/dev/wrist_2/tel"
DEVICE_STATUS_TOPIC = "ck/ag-1/dev/pendant_3/status"
OWNTRACKS_TOPIC = "owntracks/ann/phone"
ACCEPTED = "accepted"

Doc = dict[str, Any]


class Breach(AssertionError):
    """A law of the edges broken: what a parser accepted (or the letter of what it refused)
    does not serialise or read back the same, or two paths that must agree do not."""


@dataclass(frozen=True, slots=True)
class Target:
    """One parser at an edge. ``run`` returns ``accepted`` or the reason it refused;
    ``json_at`` is where a JSON object starts in its inputs (None: they are not JSON)."""

    name: str
    edge: str
    run: Callable[[bytes], str]
    seeds: tuple[bytes, ...]
    words: tuple[bytes, ...]
    max_len: int
    json_at: int | None = None


# ---------------------------------------------------------------- the law of serialising


def round_trip(value: BaseModel) -> None:
    """``value`` written as JSON and read back is ``value``, and orjson writes it too."""
    try:
        again = type(value).model_validate_json(value.model_dump_json())
        orjson.dumps(value.model_dump(mode="json"))
    except (ValueError, TypeError) as exc:  # pydantic's errors are ValueErrors, orjson's TypeErrors
        raise Breach(f"{type(value).__name__} does not serialise: {exc}") from exc
    if again != value:
        raise Breach(f"{type(value).__name__} reads back different: {value!r} != {again!r}")


def letter_written(letter: DeadLetter) -> None:
    """A dead letter serialises as the services write it."""
    try:
        orjson.dumps(letter.model_dump(mode="json"))
    except TypeError as exc:
        raise Breach(f"the dead letter does not serialise: {exc}") from exc


# ---------------------------------------------------------------- ingest: MQTT payloads


def ingest_target(
    name: str,
    edge: str,
    parse: Callable[[bytes], BaseModel | Sequence[BaseModel] | None],
    seeds: Sequence[Doc | bytes],
    json_at: int | None = 0,
) -> Target:
    """A target of one ingest parser: each accepted event must round-trip (``None``: accepted,
    nothing written; a list: every event in it), a refusal's dead letter must serialise."""

    def run(payload: bytes) -> str:
        try:
            event = parse(payload)
        except RejectedPayload as exc:
            letter_written(dead_letter(exc, payload, NOW))
            return exc.reason
        for each in [event] if isinstance(event, BaseModel) else event or ():
            round_trip(each)
        return ACCEPTED

    encoded = tuple(s if isinstance(s, bytes) else orjson.dumps(s) for s in seeds)
    max_len = LIMITS.max_payload_bytes + 512
    return Target(name, edge, run, encoded, _words(seeds), max_len, json_at)


def location(payload: bytes) -> FixEvent:
    """A phone's location, as ingest takes it: the fast path and the parser must agree."""
    r = route(LOC_TOPIC)
    fast = fast_fix(r, payload, NOW, LIMITS)
    try:
        fix = parse_location(r, LOC_TOPIC, payload, NOW, LIMITS)
    except RejectedPayload as exc:
        if fast is not None:
            raise Breach(f"the fast path took what the parser refuses ({exc.reason})") from exc
        raise
    if fast is not None and orjson.loads(fast) != fix.model_dump(mode="json"):
        raise Breach(f"the fast path wrote {fast!r}, the parser {fix.model_dump_json()}")
    return fix


def device_event(payload: bytes) -> DeviceEvent:
    return parse_device_event(route(EVT_TOPIC), EVT_TOPIC, payload, NOW, LIMITS)


def telemetry(payload: bytes) -> list[TelemetrySample]:
    """A device's vitals, as ingest takes them: the fast path and the parser must agree, and
    every sample accepted is one a person can have, taken neither ahead of the clock's skew nor
    longer ago than ingest keeps samples."""
    r = route(TEL_TOPIC)
    fast = fast_reading(r, payload, NOW, LIMITS)
    try:
        samples = parse_telemetry(r, TEL_TOPIC, payload, NOW, LIMITS)
    except RejectedPayload as exc:
        if fast is not None:
            raise Breach(f"the fast path took what the parser refuses ({exc.reason})") from exc
        raise
    if fast is not None and [orjson.loads(fast)] != [s.model_dump(mode="json") for s in samples]:
        raise Breach(f"the fast path wrote {fast!r}, the parser {samples!r}")
    if not samples:
        raise Breach("a message accepted with no sample")
    for s in samples:
        unlike = implausible(vitals_of(s))
        if unlike:
            raise Breach(f"sample {s.seq} accepted with {', '.join(unlike)} out of range")
        if not NOW - TELEMETRY_MAX_AGE_S <= s.ts <= NOW + LIMITS.max_clock_skew_s:
            raise Breach(f"sample {s.seq} accepted taken at {s.ts}, out of the window")
        if not vitals_of(s) and s.battery is None and s.rssi is None:
            raise Breach(f"sample {s.seq} accepted saying nothing")
    return samples


def device_status(payload: bytes) -> DeviceStatus:
    """A device's birth, last will or heartbeat; a heartbeat accepted is not ahead of the
    clock's skew."""
    status = parse_device_status(
        route(DEVICE_STATUS_TOPIC), DEVICE_STATUS_TOPIC, payload, NOW, LIMITS
    )
    if status.ts is not None and status.ts > NOW + LIMITS.max_clock_skew_s:
        raise Breach(f"a heartbeat accepted from {status.ts}, ahead of the clock")
    return status


def presence(payload: bytes) -> BaseModel:
    online = parse_presence(STATUS_TOPIC, payload)
    return presence_notice("cg.7", "ag-1", online, STATUS_TOPIC, NOW)


def owntracks_message(payload: bytes) -> FixEvent | None:
    """An OwnTracks message; a location becomes its caregiver's fix, as ingest makes it."""
    message = owntracks.parse(OWNTRACKS_TOPIC, payload, LIMITS)
    if isinstance(message, owntracks.OwnTracksLocation):
        return location_fix(message.location, "ag-1", "cg.7", OWNTRACKS_TOPIC, NOW, LIMITS)
    return None


def topic(data: bytes) -> BaseModel:
    """A topic as the MQTT framing decodes it: who speaks on it, or ``bad_topic``. The topic
    is written into presence notices and dead letters."""
    text = data.decode("utf-8", "replace")
    if owntracks.is_owntracks(text):
        owntracks.device_of(text)
        return presence_notice("cg.7", "ag-1", False, text, NOW)
    r: Route = route(text)
    return presence_notice(r.subject, r.agency, True, text, NOW)


LOCATION: Doc = {
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
PLAIN_LOCATION: Doc = {"lat": 53.8, "lon": -1.55, "tst": TST}
DEVICE_EVENT: Doc = {"type": "fall", "ts": NOW - 1.25, "seq": 42, "data": {}}
DOSE_EVENT: Doc = {
    "type": "dose_missed",
    "ts": NOW - 30,
    "seq": 7,
    "data": {"sent_at": NOW - 30, "slot": "evening", "meds": ["a", "b"], "n": {"x": [1, 2.5]}},
}
TELEMETRY: Doc = {"ts": NOW - 2, "seq": 310, "hr": 72, "spo2": 97.5, "temp": 36.6}
BLOOD_PRESSURE: Doc = {"ts": NOW - 40, "seq": 9, "bp_sys": 128, "bp_dia": 84, "battery": 55}
TELEMETRY_BATCH: Doc = {
    "samples": [
        {"ts": NOW - 3600 + i, "seq": 100 + i, "hr": 60 + i, "spo2": 95, "rssi": -70}
        for i in range(3)
    ]
    + [{"ts": NOW - 3000, "seq": 103, "battery": 12, "rssi": -88.5, "steps": 4}]
}
HEARTBEAT: Doc = {"ts": NOW - 2, "battery": 64}
FULL_HEARTBEAT: Doc = {
    "ts": NOW - 1.5,
    "battery": 100,
    "rssi": -71.5,
    "firmware": "1.4.2",
    "interval": 30,
    "tamper": False,
    "uptime": 9,
}
OWNTRACKS_LWT: Doc = {"_type": "lwt", "tst": TST}
OWNTRACKS_OTHER: Doc = {"_type": "transition", "event": "enter", "desc": "home", "tst": TST}


# ---------------------------------------------------------------- MQTT framing


def encode_publish(p: Publish) -> bytes:
    """A QoS 0 or 1 PUBLISH as a broker writes it."""
    body = string(p.topic) + (p.mid.to_bytes(2, "big") if p.qos else b"") + p.payload
    return bytes([0x30 | p.qos << 1]) + remaining_length(len(body)) + body


def frames(data: bytes) -> str:
    """The broker's stream framed whole and cut in pieces (its first eight of a size the first
    byte sets, then the rest) gives the same packets, and every publish whose topic decoded
    writes out and frames back as it was."""
    whole = PublishSplitter().feed(data)
    splitter, cut, passed = PublishSplitter(), [], b""
    step = data[0] % 64 + 1 if data else 1
    edges = [min(k * step, len(data)) for k in range(9)] + [len(data)]
    for at, until in itertools.pairwise(edges):
        publishes, other = splitter.feed(data[at:until])
        cut += publishes
        passed += other
    if (cut, passed) != whole:
        raise Breach(f"cut in pieces of {step} the stream frames differently")
    decoded = [p for p in whole[0] if "\ufffd" not in p.topic]
    again = PublishSplitter().feed(b"".join(map(encode_publish, decoded)))
    if again != (decoded, b""):
        raise Breach(f"{decoded!r} written out frames back as {again!r}")
    return ACCEPTED if whole[0] else "passed" if whole[1] else "incomplete"


FRAME_SEEDS = (
    encode_publish(Publish(LOC_TOPIC, orjson.dumps(LOCATION), 0, 0)),
    encode_publish(Publish(EVT_TOPIC, orjson.dumps(DEVICE_EVENT), 1, 17))
    + b"\xd0\x00"
    + encode_publish(Publish(STATUS_TOPIC, b"offline", 1, 65535)),
    b"\x20\x02\x00\x00\x90\x03\x00\x01\x01" + encode_publish(Publish("a/b", b"", 0, 0)),
    b"\x34"
    + remaining_length(9)
    + string("t")
    + b"\x00\x05"
    + b"abcd"  # QoS 2: passed on
    + encode_publish(Publish(OWNTRACKS_TOPIC, orjson.dumps(OWNTRACKS_LWT), 0, 0)),
)


# ---------------------------------------------------------------- WebSocket frames


def ws_frame(data: bytes) -> str:
    """A client's frame: the first byte says binary (even) or text (odd: the rest as the text a
    text frame carries, valid UTF-8). An accepted frame writes out and parses back the same; a
    refused one makes its error frame and dead letter."""
    raw: str | bytes = data[1:]
    if data and data[0] & 1:
        raw = data[1:].decode("utf-8", "replace")
    return frame_outcome(raw)


def frame_outcome(raw: str | bytes) -> str:
    try:
        frame = parse_frame(raw)
    except RejectedInput as exc:
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        error = error_frame(exc)
        letter_written(
            DeadLetter(
                reason=exc.reason, detail=exc.detail, source="", payload=text, received_at=NOW
            )
        )
        if orjson.loads(error)["reason"] != exc.reason:
            raise Breach(f"the error frame {error!r} lost its reason") from exc
        return exc.reason
    try:
        again = parse_frame(frame.model_dump_json())
    except RejectedInput as exc:
        raise Breach(f"{frame!r} written out is refused: {exc}") from exc
    if again != frame:
        raise Breach(f"{frame!r} reads back as {again!r}")
    return ACCEPTED


WS_FRAMES: tuple[Doc, ...] = (
    {"type": "auth", "token": "abc.def"},
    {"type": "resume", "last_seq": 12},
    {"type": "ping"},
    {"type": "accept", "offer_id": "of-1"},
    {"type": "decline", "offer_id": "of-1", "reason": "stuck in traffic"},
    {"type": "assign", "incident_id": "in-1", "caregiver_id": "cg.7"},
    {"type": "resolve", "incident_id": "in-1", "note": "all well"},
    {"type": "acknowledge", "alarm_id": "al-1"},
    {"type": "clear", "alarm_id": "al-1"},
    {
        "type": "administration",
        "record_id": "rec-1",
        "patient_id": "p1",
        "dose_key": "2026-12-03T08:00/metformin",
        "action": "administered",
        "given_at": NOW - 60,
        "note": "with breakfast",
    },
    {
        "type": "administration",
        "record_id": "rec-2",
        "patient_id": "p1",
        "dose_key": "evening",
        "action": "refused",
    },
)


# ---------------------------------------------------------------- tokens


def signed(body: bytes) -> str:
    """A token whose claims are ``body``, signed with the key: what only the issuer can make."""
    return jws.encode(body, SECRET, algorithm=ALGORITHM, headers={"kid": KID})


def token_outcome(token: str) -> str:
    """A token verified; genuine claims issue again and verify the same."""
    try:
        claims = verify(token, RING, NOW)
    except AuthError as exc:
        return str(exc)
    try:
        again = verify(issue(claims, RING, NOW), RING, NOW)
    except (AuthError, TypeError) as exc:  # a claim the JSON encoder cannot write
        raise Breach(f"{claims!r} issued again does not verify: {exc}") from exc
    if again != claims:
        raise Breach(f"{claims!r} issued again verifies as {again!r}")
    return ACCEPTED


def token(data: bytes) -> str:
    """Any text as a token (from the query string or an ``auth`` frame)."""
    return token_outcome(data.decode("utf-8", "replace"))


def token_claims(data: bytes) -> str:
    """Any claims, genuinely signed: what the token's claims decoding makes of them."""
    return token_outcome(signed(data))


_AUD = {"aud": "careknot-gateway", "iat": NOW - 1}
CLAIMS: tuple[Doc, ...] = (
    {"role": "caregiver", "sub": "cg.7", "agency": "ag-1", "exp": NOW + 600, **_AUD},
    {
        "role": "family",
        "sub": "fam-2",
        "agency": "ag-1",
        "exp": NOW + 60,
        "patients": ["p1", "p2"],
        **_AUD,
    },
    {"role": "dispatcher", "sub": "d-1", "agency": "ag-1", "exp": NOW + 3600.5, **_AUD},
)


# ---------------------------------------------------------------- every target


def _words(docs: object) -> tuple[bytes, ...]:
    """The field names and string values in ``docs`` quoted as JSON, its bytes as they are, and
    JSON's own tokens."""
    found: set[bytes] = set(JSON_WORDS)
    pending = [docs]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
        elif isinstance(item, str):
            found.add(orjson.dumps(item))
        elif isinstance(item, bytes):
            found.add(item)
    return tuple(sorted(found))


JSON_WORDS = (
    b"{", b"}", b"[", b"]", b":", b",", b"null", b"true", b"false", b"-0", b"1e400", b"NaN",
    b"Infinity", b"18446744073709551616", b"\\ud800", b"\\u0000", b"\xed\xa0\x80", b"\xff",
)  # fmt: skip

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        ingest_target(
            "location",
            "ck/{agency}/cg/{caregiver}/loc: a phone's fix (fast path and parser)",
            location,
            [LOCATION, PLAIN_LOCATION],
        ),
        ingest_target(
            "device-event",
            "ck/{agency}/dev/{device}/evt: a home device's event",
            device_event,
            [DEVICE_EVENT, DOSE_EVENT],
        ),
        ingest_target(
            "telemetry",
            "ck/{agency}/dev/{device}/tel: a device's vitals, one sample or a batch",
            telemetry,
            [TELEMETRY, BLOOD_PRESSURE, TELEMETRY_BATCH],
        ),
        ingest_target(
            "device-status",
            "ck/{agency}/dev/{device}/status: a device's birth, last will or heartbeat",
            device_status,
            [b"online", b"offline", HEARTBEAT, FULL_HEARTBEAT],
        ),
        ingest_target(
            "presence",
            "ck/{agency}/cg/{caregiver}/status: a phone's last will",
            presence,
            [b"online", b"offline"],
            json_at=None,
        ),
        ingest_target(
            "owntracks",
            "owntracks/{user}/{device}: the OwnTracks app",
            owntracks_message,
            [LOCATION, OWNTRACKS_LWT, OWNTRACKS_OTHER],
        ),
        ingest_target(
            "topic",
            "MQTT topics: who speaks, about what",
            topic,
            [
                t.encode()
                for t in (
                    LOC_TOPIC,
                    STATUS_TOPIC,
                    EVT_TOPIC,
                    TEL_TOPIC,
                    DEVICE_STATUS_TOPIC,
                    OWNTRACKS_TOPIC,
                )
            ],
            json_at=None,
        ),
        Target(
            "mqtt-frames",
            "the broker's byte stream: PUBLISH packets framed",
            frames,
            FRAME_SEEDS,
            (b"\x30", b"\x32", b"\xd0\x00", b"\xff\xff\xff\x7f", b"\x80"),
            8192,
        ),
        Target(
            "ws-frame",
            "a WebSocket client's frame",
            ws_frame,
            tuple(b"\x00" + orjson.dumps(f) for f in WS_FRAMES)
            + tuple(b"\x01" + orjson.dumps(f) for f in WS_FRAMES),
            _words([*WS_FRAMES, sorted(COMMAND_TYPES)]),
            8192,
            json_at=1,
        ),
        Target(
            "token",
            "a gateway token as given",
            token,
            tuple(issue(Claims.model_validate(c), RING, NOW).encode() for c in CLAIMS),
            (b".", b"-", b"_", b"="),
            1024,
        ),
        Target(
            "token-claims",
            "a gateway token's claims, genuinely signed",
            token_claims,
            tuple(orjson.dumps(c) for c in CLAIMS),
            _words([*CLAIMS, "caregiver", "family", "dispatcher"]),
            1024,
            json_at=0,
        ),
    )
}
