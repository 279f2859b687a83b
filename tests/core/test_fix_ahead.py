"""A phone's fix stamped further ahead of ingest's clock than ``max_fix_ahead_s`` (30 s) is
refused (``from_future``) by the fast path and the parser alike: stamped minutes ahead, it
would stand as her newest position and every true fix after it would be out of order. Device
events keep the wider window of ``max_clock_skew_s``."""

from __future__ import annotations

import orjson
import pytest

from ingest.fast_path import fast_fix
from ingest.parse import Limits, parse_device_event, parse_location, route
from kernel.errors import RejectedPayload
from kernel.settings import Settings

NOW = 1_700_000_000.0
TOPIC = "ck/ag-1/cg/cg-7/loc"
LIMITS = Limits()


def location(ahead_s: int) -> bytes:
    return orjson.dumps({"lat": 53.8, "lon": -1.55, "tst": int(NOW) + ahead_s, "acc": 5})


@pytest.mark.parametrize("ahead_s", [0, 29, 30])
def test_a_fix_within_the_allowance_is_taken_by_both_paths(ahead_s: int) -> None:
    fast = fast_fix(route(TOPIC), location(ahead_s), NOW, LIMITS)
    assert fast is not None and orjson.loads(fast)["ts"] == NOW + ahead_s
    assert parse_location(route(TOPIC), TOPIC, location(ahead_s), NOW, LIMITS).ts == NOW + ahead_s


@pytest.mark.parametrize("ahead_s", [31, 120, 299, 3600])
def test_a_fix_stamped_further_ahead_is_refused_by_both_paths(ahead_s: int) -> None:
    assert fast_fix(route(TOPIC), location(ahead_s), NOW, LIMITS) is None  # the parser decides
    with pytest.raises(RejectedPayload) as refused:
        parse_location(route(TOPIC), TOPIC, location(ahead_s), NOW, LIMITS)
    assert refused.value.reason == "from_future"


def test_device_events_keep_the_clock_skew_window() -> None:
    topic = "ck/ag-1/dev/fd-1/evt"
    body = orjson.dumps({"type": "fall", "ts": NOW + 120, "seq": 1})
    assert parse_device_event(route(topic), topic, body, NOW, LIMITS).ts == NOW + 120


def test_the_settings_default_is_small() -> None:
    s = Settings()
    assert s.max_fix_ahead_s == LIMITS.max_fix_ahead_s == 30.0 < s.max_clock_skew_s
