"""A telemetry message parsed (``ingest.parse.parse_telemetry``): one sample or a batch, each
refusal with its reason; pure, time passed in."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ingest.parse import Limits, parse_telemetry, route
from kernel.contracts import TELEMETRY_BATCH_MAX, vitals_of
from kernel.errors import RejectedPayload

NOW = 1_800_000_000.0
TOPIC = "ck/ag/dev/wrist-1/tel"


def parse(body: Any) -> list[Any]:
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    return parse_telemetry(route(TOPIC), TOPIC, payload, NOW, Limits())


def test_one_sample_of_several_measures() -> None:
    (s,) = parse({"ts": NOW - 5, "seq": 7, "hr": 72, "spo2": 97.5, "temp": 36.6, "steps": 9})
    assert (s.device_id, s.agency_id, s.seq, s.received_at) == ("wrist-1", "ag", 7, NOW)
    assert vitals_of(s) == {"hr": 72.0, "spo2": 97.5, "temp": 36.6}


def test_a_batch_of_samples_in_order() -> None:
    batch = {"samples": [{"ts": NOW - 60 + i, "seq": i, "hr": 70 + i} for i in range(3)]}
    assert [(s.seq, s.hr) for s in parse(batch)] == [(0, 70), (1, 71), (2, 72)]


def test_battery_and_signal_alone_are_a_sample() -> None:
    (s,) = parse({"ts": NOW, "seq": 1, "battery": 40, "rssi": -71})
    assert vitals_of(s) == {} and s.battery == 40


REFUSED = [
    ({"ts": NOW, "seq": 1, "hr": 251}, "out_of_range"),
    ({"ts": NOW, "seq": 1, "spo2": 49}, "out_of_range"),
    ({"ts": NOW, "seq": 1, "temp": 46}, "out_of_range"),
    ({"ts": NOW, "seq": 1, "bp_sys": 80, "bp_dia": 95}, "out_of_range"),
    ({"ts": NOW + 301, "seq": 1, "hr": 70}, "from_future"),
    ({"ts": NOW - 86_401, "seq": 1, "hr": 70}, "too_old"),
    ({"ts": NOW, "seq": 1}, "no_readings"),
    ({"ts": NOW, "seq": 1, "hr": "fast"}, "invalid_fields"),
    ({"seq": 1, "hr": 70}, "invalid_fields"),
    ({"samples": []}, "invalid_fields"),
    ({"samples": [{"ts": NOW, "seq": i, "hr": 70} for i in range(61)]}, "invalid_fields"),
    (
        {"samples": [{"ts": NOW, "seq": 1, "hr": 70}, {"ts": NOW, "seq": 2, "hr": 300}]},
        "out_of_range",
    ),
    (b'{"ts": 1, "hr": NaN}', "malformed_json"),
    (b"[1, 2]", "malformed_json"),
]


@pytest.mark.parametrize(("body", "reason"), REFUSED)
def test_what_is_refused_and_why(body: Any, reason: str) -> None:
    with pytest.raises(RejectedPayload) as refused:
        parse(body)
    assert refused.value.reason == reason
    assert refused.value.topic == TOPIC


def test_the_batch_bound_is_the_contract_s() -> None:
    assert TELEMETRY_BATCH_MAX == 60
