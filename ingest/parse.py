"""Pure parsing of MQTT messages into the system's events, or a reason to refuse them.

Nothing here does I/O: the topic and payload go in with the time, an event or a
:class:`~kernel.errors.RejectedPayload` comes out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from devices.kinds import UNKNOWN_KIND, event_refusal, kind_of
from kernel.contracts import (
    DEVICE_STATUS_PAYLOADS,
    DeadLetter,
    DeviceEvent,
    DeviceEventPayload,
    DeviceHeartbeatPayload,
    DeviceStatus,
    FixEvent,
    LocationPayload,
    Presence,
    TelemetryBatch,
    TelemetryReading,
    TelemetrySample,
    vitals_of,
)
from kernel.errors import RejectedPayload
from vitals.measures import PLAUSIBLE, UNITS, Measure, implausible

RouteKind = Literal["loc", "presence", "evt", "tel", "status"]
_ID = r"[A-Za-z0-9_.\-]{1,64}"
_TOPIC = re.compile(rf"^ck/(?P<agency>{_ID})/(?P<who>cg|dev)/(?P<subject>{_ID})/(?P<kind>\w+)$")
_KINDS: dict[str, dict[str, RouteKind]] = {
    "cg": {"loc": "loc", "status": "presence"},
    "dev": {"evt": "evt", "tel": "tel", "status": "status"},
}
PRESENCE_PAYLOADS = {b"online": True, b"offline": False}
TOO_LARGE = "too_large"
DEAD_LETTER_PAYLOAD_CHARS = 1024
ROUTES_CACHED = 262_144
MAX_DEPTH = 32
"""Deepest a payload's JSON may nest (the payload itself is level 1): phones and devices send
flat data, and orjson and pydantic refuse to write out JSON some 255 levels deep."""
M = TypeVar("M", bound=BaseModel)
TELEMETRY_MAX_AGE_S = 86_400.0
"""A telemetry sample older than this is refused (``too_old``): a monitor's buffer emptied
after a dropout is younger, and the raw vitals are kept a day."""


@dataclass(frozen=True, slots=True)
class Route:
    """Who a topic says is speaking, and what about (``presence``: a caregiver's phone's
    ``status`` topic; ``status``: a device's)."""

    kind: RouteKind
    agency: str
    subject: str


TOPIC_ROOM = 2 + 256 + 2
"""What a PUBLISH carries besides its payload: the topic's length, the topic (the longest
ingest takes, ``ck/{64}/cg/{64}/status`` or an OwnTracks ``owntracks/{64}/{64}``, is 142
bytes) and a QoS 1 packet id."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_payload_bytes: int = 4096
    max_clock_skew_s: float = 300.0
    max_fix_ahead_s: float = 30.0
    """How far ahead of ours a phone's fix may be stamped (its clock is GPS or network time):
    one stamped further would stand as her newest position, every true fix after it out of
    order, until our clock caught up with it."""

    @property
    def max_publish_bytes(self) -> int:
        """The longest MQTT PUBLISH (its remaining length) whose payload may be taken: a longer
        one is refused (``too_large``) as it arrives, never buffered whole."""
        return self.max_payload_bytes + TOPIC_ROOM


@lru_cache(maxsize=ROUTES_CACHED)
def route(topic: str) -> Route:
    """Who speaks on ``topic``, and about what, or :class:`RejectedPayload` (``bad_topic``).
    Every message asks, and a phone keeps its topic, so answers are kept (refusals are not)."""
    m = _TOPIC.fullmatch(topic)
    if m is None or m["kind"] not in _KINDS[m["who"]]:
        raise RejectedPayload("bad_topic", f"not a v1 topic: {topic[:200]!r}", topic=topic)
    return Route(_KINDS[m["who"]][m["kind"]], m["agency"], m["subject"])


def parse_presence(topic: str, payload: bytes) -> bool:
    """A phone's ``status`` (its MQTT last will, or what it says itself): True for ``online``,
    False for ``offline``, else :class:`RejectedPayload`."""
    state = PRESENCE_PAYLOADS.get(payload.strip())
    if state is None:
        raise RejectedPayload("bad_status", "status must be online or offline", topic=topic)
    return state


def load_object(topic: str, payload: bytes, limits: Limits) -> dict[str, Any]:
    """The payload as a JSON object, or :class:`RejectedPayload` (too large, not JSON, nested
    deeper than :data:`MAX_DEPTH`)."""
    if len(payload) > limits.max_payload_bytes:
        raise RejectedPayload(TOO_LARGE, f"{len(payload)} bytes", topic=topic)
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise RejectedPayload("malformed_json", str(exc), topic=topic) from exc
    if not isinstance(raw, dict):
        raise RejectedPayload("malformed_json", "payload is not a JSON object", topic=topic)
    if may_nest_deeper(payload, MAX_DEPTH) and nests_deeper(raw, MAX_DEPTH):
        raise RejectedPayload("too_deep", f"nested deeper than {MAX_DEPTH} levels", topic=topic)
    return raw


def may_nest_deeper(payload: bytes, levels: int) -> bool:
    """Whether ``payload`` opens more than ``levels`` objects and arrays, counting brackets in
    strings too: when it does not, it cannot nest deeper, and a plain payload is not walked."""
    return payload.count(b"{") + payload.count(b"[") > levels


def nests_deeper(value: object, levels: int) -> bool:
    """Whether objects and arrays nest more than ``levels`` deep in ``value`` (walked without
    recursion, so any depth the JSON decoder returns is measured)."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > levels:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def validate(model: type[M], topic: str, raw: dict[str, Any]) -> M:
    """``raw`` as ``model``, or :class:`RejectedPayload` with the fields that failed."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise RejectedPayload("invalid_fields", detail, topic=topic) from exc


def _decode(model: type[M], topic: str, payload: bytes, limits: Limits) -> M:
    return validate(model, topic, load_object(topic, payload, limits))


def _check_clock(ts: float, now: float, limits: Limits, topic: str) -> None:
    if ts > now + limits.max_clock_skew_s:
        raise RejectedPayload("from_future", f"ts {ts} is ahead of {now}", topic=topic)


def parse_location(r: Route, topic: str, payload: bytes, now: float, limits: Limits) -> FixEvent:
    loc = _decode(LocationPayload, topic, payload, limits)
    return location_fix(loc, r.agency, r.subject, topic, now, limits)


def location_fix(
    loc: LocationPayload, agency: str, caregiver: str, topic: str, now: float, limits: Limits
) -> FixEvent:
    """The fix a caregiver's validated location makes, unless its clock is too far ahead
    (more than ``limits.max_fix_ahead_s``)."""
    if loc.tst > now + limits.max_fix_ahead_s:
        raise RejectedPayload("from_future", f"tst {loc.tst} is ahead of {now}", topic=topic)
    return FixEvent(
        event_id=f"{caregiver}:{loc.tst}",
        agency_id=agency,
        caregiver_id=caregiver,
        lat=loc.lat,
        lon=loc.lon,
        ts=float(loc.tst),
        acc=loc.acc,
        vel=loc.vel,
        batt=loc.batt,
        received_at=now,
    )


def parse_device_event(
    r: Route, topic: str, payload: bytes, now: float, limits: Limits
) -> DeviceEvent:
    evt = _decode(DeviceEventPayload, topic, payload, limits)
    _check_clock(evt.ts, now, limits, topic)
    if evt.ts < now - limits.max_clock_skew_s:
        raise RejectedPayload(
            "too_old", f"ts {evt.ts} is older than the replay window", topic=topic
        )
    sent_at = evt.data.get("sent_at")
    return DeviceEvent(
        event_id=f"{r.subject}:{evt.seq}:{round(evt.ts * 1000)}",
        agency_id=r.agency,
        device_id=r.subject,
        type=evt.type,
        ts=evt.ts,
        seq=evt.seq,
        data=evt.data,
        received_at=now,
        published_at=float(sent_at) if isinstance(sent_at, int | float) else None,
    )


def parse_telemetry(
    r: Route, topic: str, payload: bytes, now: float, limits: Limits
) -> list[TelemetrySample]:
    """The samples of a telemetry message (one reading, or ``{"samples": [...]}``), or
    :class:`RejectedPayload` for the whole message: ``no_readings`` (a sample saying nothing),
    ``out_of_range`` (a value no living person has), ``from_future``, ``too_old``."""
    raw = load_object(topic, payload, limits)
    if "samples" in raw:
        readings = validate(TelemetryBatch, topic, raw).samples
    else:
        readings = [validate(TelemetryReading, topic, raw)]
    return [_sample(r, reading, topic, now, limits) for reading in readings]


def _sample(
    r: Route, reading: TelemetryReading, topic: str, now: float, limits: Limits
) -> TelemetrySample:
    _check_clock(reading.ts, now, limits, topic)
    if reading.ts < now - TELEMETRY_MAX_AGE_S:
        raise RejectedPayload("too_old", f"ts {reading.ts} is older than a day", topic=topic)
    values = vitals_of(reading)
    if not values and reading.battery is None and reading.rssi is None:
        raise RejectedPayload("no_readings", f"sample {reading.seq} says nothing", topic=topic)
    wrong = implausible(values)
    if wrong:
        detail = ", ".join(f"{m} {values[m]:g} {UNITS[m]} ({_bounds(m)})" for m in wrong)
        raise RejectedPayload("out_of_range", detail, topic=topic)
    return TelemetrySample(
        agency_id=r.agency,
        device_id=r.subject,
        received_at=now,
        **reading.model_dump(),
    )


def _bounds(measure: Measure) -> str:
    low, high = PLAUSIBLE[measure]
    return f"a person reads {low:g} to {high:g}"


def parse_device_status(
    r: Route, topic: str, payload: bytes, now: float, limits: Limits
) -> DeviceStatus:
    """A device's ``status``: its birth or last will (``online``, ``offline``), or a heartbeat
    (JSON); else :class:`RejectedPayload` (``bad_status``, or the heartbeat's reasons)."""
    plain = DEVICE_STATUS_PAYLOADS.get(payload.strip())
    if plain is not None:
        return DeviceStatus(
            event_id=f"{r.subject}:{plain}:{now!r}",
            agency_id=r.agency,
            device_id=r.subject,
            status=plain,
            received_at=now,
        )
    if not payload.lstrip().startswith(b"{"):
        detail = "a device's status is online, offline or a heartbeat (a JSON object)"
        raise RejectedPayload("bad_status", detail, topic=topic)
    beat = _decode(DeviceHeartbeatPayload, topic, payload, limits)
    _check_clock(beat.ts, now, limits, topic)
    return DeviceStatus(
        event_id=f"{r.subject}:heartbeat:{round(beat.ts * 1000)}",
        agency_id=r.agency,
        device_id=r.subject,
        status="heartbeat",
        received_at=now,
        ts=beat.ts,
        battery=beat.battery,
        rssi=beat.rssi,
        firmware=beat.firmware,
        interval_s=beat.interval,
        tamper=beat.tamper,
    )


def check_kind(kind: str | None, topic: str, event_type: str | None = None) -> None:
    """:class:`RejectedPayload` when the device is of a kind the system does not know
    (``unknown_device_kind``) or, for an event, when its kind never sends one of that type
    (``event_not_for_kind``: a fall detector's ``dose_taken``)."""
    if event_type is None:
        reason = None if kind_of(kind) is not None else UNKNOWN_KIND
    else:
        reason = event_refusal(kind, event_type)
    if reason is not None:
        said = "a status" if event_type is None else f"{event_type!r}"
        raise RejectedPayload(reason, f"{said} from a device of kind {kind!r}", topic=topic)


def dead_letter(exc: RejectedPayload, payload: bytes, now: float) -> DeadLetter:
    return DeadLetter(
        reason=exc.reason,
        detail=exc.detail[:500],
        source=exc.topic[:300],
        payload=payload[:DEAD_LETTER_PAYLOAD_CHARS].decode("utf-8", "replace"),
        received_at=now,
    )


def presence_notice(caregiver: str, agency: str, online: bool, topic: str, now: float) -> Presence:
    """A caregiver's phone came online or went (its last will says ``offline``): gone, she is
    no dispatch candidate until her next fix (the worker marks her so unless a fix of hers
    reached ingest after the notice)."""
    return Presence(
        event_id=f"{caregiver}:{'online' if online else 'offline'}:{now!r}",
        agency_id=agency,
        caregiver_id=caregiver,
        online=online,
        at=now,
        source=topic,
    )
