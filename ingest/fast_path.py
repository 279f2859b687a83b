"""The fast paths for a location and a telemetry reading: plain checks on the decoded JSON of
a well-formed v1 fix or single reading.

Most fixes and readings are plainly well formed; checking them field by field costs a fraction
of the pydantic parser. Anything unusual returns None and goes through the parser
(:func:`ingest.parse.parse_location`, :func:`ingest.parse.parse_telemetry`), which gives the
same rejections, so these paths never change what is accepted (the fuzz targets hold each to
the parser's answers).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from ingest.parse import MAX_DEPTH, TELEMETRY_MAX_AGE_S, Limits, Route, may_nest_deeper
from kernel.contracts import SEQ_MAX
from vitals.measures import MEASURES, implausible


def _number(raw: dict[str, Any], name: str, low: float, high: float) -> float | None:
    """A required JSON number within [low, high], or None when it is anything else."""
    v = raw.get(name)
    if type(v) is float or type(v) is int:
        f = float(v)
        if low <= f <= high and math.isfinite(f):
            return f
    return None


def _optional(raw: dict[str, Any], name: str, kinds: tuple[type, ...]) -> tuple[bool, Any]:
    """(usable, value) of an optional field: absent or null, or a finite value of ``kinds``."""
    v = raw.get(name)
    if v is None:
        return True, None
    if type(v) not in kinds or (type(v) is float and not math.isfinite(v)):
        return False, None
    return True, v


def fast_fix(r: Route, payload: bytes, now: float, limits: Limits) -> bytes | None:
    """The fix JSON of a plainly well-formed v1 location, or None: then the full parser decides
    (and rejects what it rejects), so this path never changes what is accepted."""
    if len(payload) > limits.max_payload_bytes or may_nest_deeper(payload, MAX_DEPTH):
        return None  # the parser measures the nesting (too_deep)
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(raw) is not dict:
        return None
    fix = _plain_location(raw, now + limits.max_fix_ahead_s)
    if fix is None:
        return None
    fix.update(
        event_id=f"{r.subject}:{raw['tst']}",
        agency_id=r.agency,
        caregiver_id=r.subject,
        received_at=now,
    )
    return orjson.dumps(fix)


def _plain_location(raw: dict[str, Any], latest: float) -> dict[str, Any] | None:
    """The position fields of a location whose every field is plainly valid, else None."""
    lat, lon = _number(raw, "lat", -90.0, 90.0), _number(raw, "lon", -180.0, 180.0)
    tst = raw.get("tst")
    if raw.get("_type", "location") != "location" or lat is None or lon is None:
        return None
    if type(tst) is not int or not 0 < tst <= latest:
        return None
    fields = {n: _optional(raw, n, (float, int)) for n in ("acc", "vel", "cog", "alt")}
    fields["batt"] = _optional(raw, "batt", (int,))
    if not all(ok for ok, _ in fields.values()):
        return None
    acc, vel, batt = fields["acc"][1], fields["vel"][1], fields["batt"][1]
    if (acc is not None and acc < 0) or (vel is not None and vel < 0):
        return None
    if batt is not None and not 0 <= batt <= 100:
        return None
    return {
        "lat": lat,
        "lon": lon,
        "ts": float(tst),
        "acc": None if acc is None else float(acc),
        "vel": None if vel is None else float(vel),
        "batt": batt,
    }


def fast_reading(r: Route, payload: bytes, now: float, limits: Limits) -> bytes | None:
    """The sample JSON of a plainly well-formed single telemetry reading, or None: then the
    full parser decides (a batch of samples always goes to it)."""
    if len(payload) > limits.max_payload_bytes or may_nest_deeper(payload, MAX_DEPTH):
        return None
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(raw) is not dict or "samples" in raw:
        return None
    sample = _plain_reading(raw, now - TELEMETRY_MAX_AGE_S, now + limits.max_clock_skew_s)
    if sample is None:
        return None
    sample.update(agency_id=r.agency, device_id=r.subject, received_at=now)
    return orjson.dumps(sample)


def _plain_reading(raw: dict[str, Any], oldest: float, latest: float) -> dict[str, Any] | None:
    """The fields of a reading whose every field is plainly valid and whose vitals a person
    can have, else None."""
    ts, seq = _number(raw, "ts", oldest, latest), raw.get("seq")
    if ts is None or ts <= 0 or type(seq) is not int or not 0 <= seq <= SEQ_MAX:
        return None
    fields = {m: _optional(raw, m, (float, int)) for m in (*MEASURES, "rssi")}
    battery = _optional(raw, "battery", (int,))
    if not all(ok for ok, _ in fields.values()) or not battery[0]:
        return None
    values = {m: float(v) for m in MEASURES if (v := fields[m][1]) is not None}
    rssi = fields["rssi"][1]
    if battery[1] is not None and not 0 <= battery[1] <= 100:
        return None
    if implausible(values) or not (values or battery[1] is not None or rssi is not None):
        return None
    return {
        "ts": ts,
        "seq": seq,
        **{m: values.get(m) for m in MEASURES},
        "battery": battery[1],
        "rssi": None if rssi is None else float(rssi),
    }
