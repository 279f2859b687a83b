"""A home device's ``status`` topic parsed (``ingest.parse``): its birth and last will, its
heartbeats, and what is refused with which reason; a device's kind checked against what it
sends. Pure: no servers."""

from __future__ import annotations

import orjson
import pytest

from ingest.parse import Limits, check_kind, parse_device_status, route
from kernel.contracts import DeviceStatus
from kernel.errors import RejectedPayload

TOPIC = "ck/ag-1/dev/fd-7/status"
NOW = 1_700_000_000.0
LIMITS = Limits()


def parsed(payload: bytes) -> DeviceStatus:
    return parse_device_status(route(TOPIC), TOPIC, payload, NOW, LIMITS)


def reason(payload: bytes) -> str:
    with pytest.raises(RejectedPayload) as refused:
        parsed(payload)
    return refused.value.reason


@pytest.mark.parametrize(("payload", "status"), [(b"online", "online"), (b" offline\n", "offline")])
def test_the_birth_and_the_last_will(payload: bytes, status: str) -> None:
    s = parsed(payload)
    assert (s.status, s.device_id, s.agency_id, s.received_at, s.ts) == (
        status,
        "fd-7",
        "ag-1",
        NOW,
        None,
    )


def test_a_heartbeat_with_everything_it_may_say() -> None:
    body = {"ts": NOW - 2, "battery": 64, "rssi": -71, "firmware": "1.4.2", "interval": 30}
    s = parsed(orjson.dumps({**body, "tamper": False, "uptime": 9}))  # a field not known: fine
    assert s.model_dump(exclude={"event_id"}) == {
        "agency_id": "ag-1",
        "device_id": "fd-7",
        "status": "heartbeat",
        "received_at": NOW,
        "ts": NOW - 2,
        "battery": 64,
        "rssi": -71.0,
        "firmware": "1.4.2",
        "interval_s": 30.0,
        "tamper": False,
    }
    assert s.event_id == parsed(orjson.dumps(body)).event_id  # the same beat, the same id


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"gone", "bad_status"),
        (b"ONLINE", "bad_status"),
        (b"", "bad_status"),
        (b"{not json", "malformed_json"),
        (b'{"ts": 1700000000}', "invalid_fields"),  # no battery
        (b'{"ts": 1700000000, "battery": 140}', "invalid_fields"),
        (b'{"ts": 1700000000, "battery": 50, "interval": -1}', "invalid_fields"),
        (orjson.dumps({"ts": NOW + 3600, "battery": 50}), "from_future"),
    ],
)
def test_what_is_refused_and_why(payload: bytes, why: str) -> None:
    assert reason(payload) == why


@pytest.mark.parametrize(
    ("kind", "event", "why"),
    [
        ("fall_detector", "fall", None),
        ("fall_detector", None, None),
        ("fall_detector", "dose_taken", "event_not_for_kind"),
        ("toaster", None, "unknown_device_kind"),
        ("toaster", "fall", "unknown_device_kind"),
        (None, None, "unknown_device_kind"),
    ],
)
def test_a_device_is_held_to_its_kind(kind: str | None, event: str | None, why: str) -> None:
    if why is None:
        check_kind(kind, TOPIC, event)
        return
    with pytest.raises(RejectedPayload) as refused:
        check_kind(kind, TOPIC, event)
    assert (refused.value.reason, refused.value.topic) == (why, TOPIC)
