"""The telemetry fast path agrees with the parser: whatever it takes, the parser takes and writes
the same; whatever the parser refuses, it leaves to the parser; and a plain reading does take it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.fast_path import fast_reading
from ingest.parse import Limits, parse_telemetry, route
from kernel.contracts import SEQ_MAX
from kernel.errors import RejectedPayload

TOPIC = "ck/a1/dev/bvm-1/tel"
NOW = 1_796_000_000.0
LIMITS = Limits()

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=False, width=64),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([0, 1, 20, 72, 97.5, 100, 101, 36.6, 250, 251, -1]),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)
readings = st.fixed_dictionaries(
    {},
    optional={
        "ts": st.one_of(
            st.floats(min_value=NOW - 90_000, max_value=NOW + 400, allow_nan=False), numbers
        ),
        "seq": st.one_of(st.integers(min_value=-2, max_value=2**31), numbers),
        "hr": numbers,
        "spo2": numbers,
        "temp": numbers,
        "bp_sys": numbers,
        "bp_dia": numbers,
        "battery": numbers,
        "rssi": numbers,
        "note": numbers,
    },
)


def both(payload: bytes) -> tuple[bytes | None, list[dict[str, Any]] | str]:
    r = route(TOPIC)
    fast = fast_reading(r, payload, NOW, LIMITS)
    try:
        slow: list[dict[str, Any]] | str = [
            s.model_dump(mode="json") for s in parse_telemetry(r, TOPIC, payload, NOW, LIMITS)
        ]
    except RejectedPayload as exc:
        slow = exc.reason
    return fast, slow


@given(readings)
def test_what_the_fast_path_takes_the_parser_takes_and_writes_alike(raw: dict[str, Any]) -> None:
    fast, slow = both(orjson.dumps(raw))
    if fast is not None:
        assert isinstance(slow, list), f"the fast path took what the parser refuses: {slow}"
        assert [orjson.loads(fast)] == slow


@pytest.mark.parametrize(
    "raw",
    [
        {"ts": NOW - 5, "seq": 3, "hr": 72, "spo2": 97.5, "temp": 36.6},
        {"ts": NOW, "seq": 0, "bp_sys": 120, "bp_dia": 80, "battery": 55},
        {"ts": NOW - 1, "seq": 7, "rssi": -70},
        {"ts": NOW - 1, "seq": SEQ_MAX, "hr": 64},
    ],
)
def test_a_plain_reading_takes_the_fast_path(raw: dict[str, Any]) -> None:
    fast, slow = both(orjson.dumps(raw))
    assert fast is not None and [orjson.loads(fast)] == slow


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"ts": NOW, "seq": 1, "hr": 300}, "out_of_range"),
        ({"ts": NOW, "seq": 1, "bp_sys": 80, "bp_dia": 90}, "out_of_range"),
        ({"ts": NOW + 3600, "seq": 1, "hr": 70}, "from_future"),
        ({"ts": NOW - 100_000, "seq": 1, "hr": 70}, "too_old"),
        ({"ts": NOW, "seq": 1}, "no_readings"),
        ({"samples": [{"ts": NOW, "seq": 1, "hr": 70}]}, None),
        ({"ts": NOW, "seq": SEQ_MAX + 1, "hr": 70}, "invalid_fields"),
        ({"ts": NOW, "seq": 2**64 - 1, "hr": 70}, "invalid_fields"),
    ],
)
def test_what_is_not_plain_is_left_to_the_parser(raw: dict[str, Any], reason: str | None) -> None:
    fast, slow = both(orjson.dumps(raw))
    assert fast is None
    assert (slow if isinstance(slow, str) else None) == reason
