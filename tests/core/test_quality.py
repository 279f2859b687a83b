"""Fix quality filters: a table of verdicts, per-agency policies, and laws over fix streams."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geofence.quality import (
    AcceptedFix,
    AgencyPolicies,
    Position,
    QualityPolicy,
    Verdict,
    assess,
    screen,
)
from kernel.contracts import FixEvent

NOW = 1_700_000_000.0
LEEDS = (53.8008, -1.5491)
POLICY = QualityPolicy()
# 0.0009 degrees of latitude is ~100 m
PREVIOUS = AcceptedFix(LEEDS[0], LEEDS[1], NOW - 60, acc=10.0)


def fix(**changes: Any) -> FixEvent:
    doc: dict[str, Any] = {
        "event_id": "x",
        "agency_id": "ag",
        "caregiver_id": "cg",
        "lat": LEEDS[0] + 0.0009,
        "lon": LEEDS[1],
        "ts": NOW - 30,
        "acc": 10.0,
        "received_at": NOW,
    }
    doc.update(changes)
    return FixEvent.model_validate(doc)


@pytest.mark.parametrize(
    ("previous", "changes", "expected"),
    [
        (None, {}, Verdict("accept")),
        (PREVIOUS, {}, Verdict("accept")),
        (None, {"lat": 0.0, "lon": 0.0}, Verdict("drop", "null_island")),
        (None, {"lat": math.nan}, Verdict("drop", "invalid")),
        (None, {"lon": math.inf}, Verdict("drop", "invalid")),
        (None, {"lat": 91.0}, Verdict("drop", "invalid")),
        (None, {"lon": -180.5}, Verdict("drop", "invalid")),
        (None, {"ts": NOW + 301}, Verdict("drop", "from_future")),
        (None, {"ts": NOW + 299}, Verdict("accept")),
        (None, {"ts": NOW - 86_401}, Verdict("drop", "too_old")),
        (None, {"acc": 100.5}, Verdict("drop", "poor_accuracy")),
        (None, {"acc": 100.0}, Verdict("accept")),
        (None, {"acc": None}, Verdict("accept")),
        (PREVIOUS, {"ts": PREVIOUS.ts}, Verdict("history_only", "duplicate")),
        (PREVIOUS, {"ts": PREVIOUS.ts - 1}, Verdict("history_only", "out_of_order")),
        (PREVIOUS, {"ts": PREVIOUS.ts + 0.5}, Verdict("drop", "too_frequent")),
        (PREVIOUS, {"ts": PREVIOUS.ts + 1, "lat": LEEDS[0] + 0.0001}, Verdict("accept")),
        # 10 km in 60 s is 600 km/h
        (PREVIOUS, {"lat": LEEDS[0] + 0.09}, Verdict("drop", "impossible_jump")),
        # 1.8 km in 30 s is 216 km/h; 1.6 km in 30 s is 192 km/h
        (PREVIOUS, {"lat": LEEDS[0] + 0.0162, "ts": NOW - 30}, Verdict("drop", "impossible_jump")),
        (PREVIOUS, {"lat": LEEDS[0] + 0.0144, "ts": NOW - 30}, Verdict("accept")),
        # a 200 m hop in 1 s is fast, but the two accuracy circles (150 m each) overlap
        (
            AcceptedFix(*LEEDS, NOW - 60, 150.0),
            {"lat": LEEDS[0] + 0.0018, "ts": NOW - 59, "acc": 60.0},
            Verdict("accept"),
        ),
        # a bad fix is bad whatever came before: accuracy before order
        (PREVIOUS, {"ts": PREVIOUS.ts - 1, "acc": 500.0}, Verdict("drop", "poor_accuracy")),
    ],
)
def test_verdicts(previous: AcceptedFix | None, changes: dict[str, Any], expected: Verdict) -> None:
    assert assess(previous, fix(**changes), NOW, POLICY) == expected


def test_accuracy_circles_that_do_not_overlap_do_not_excuse_a_jump() -> None:
    previous = AcceptedFix(*LEEDS, NOW - 60, 50.0)
    verdict = assess(previous, fix(lat=LEEDS[0] + 0.0018, ts=NOW - 59, acc=50.0), NOW, POLICY)
    assert verdict == Verdict("drop", "impossible_jump")


def test_a_filter_set_to_none_is_off() -> None:
    off = QualityPolicy(None, None, None, None, None)
    wild = fix(acc=5000.0, ts=NOW + 10_000, lat=LEEDS[0] + 5)
    assert assess(PREVIOUS, wild, NOW, off) == Verdict("accept")
    assert assess(PREVIOUS, fix(ts=PREVIOUS.ts + 0.1), NOW, off) == Verdict("accept")


def test_an_agency_overrides_the_default_policy() -> None:
    strict = QualityPolicy(max_accuracy_m=20.0)
    policies = AgencyPolicies(overrides={"strict-care": strict})
    assert policies.for_agency("strict-care") is strict
    assert policies.for_agency("other") == QualityPolicy()
    poor = [fix(acc=50.0, agency_id="strict-care"), fix(acc=50.0, caregiver_id="cg2")]
    result = screen({}, poor, NOW, policies.for_agency)
    assert [f.caregiver_id for f in result.live] == ["cg2"]
    assert result.reasons == {("drop", "poor_accuracy"): 1}
    assert result.dropped == [(poor[0], "poor_accuracy")]


def test_a_batch_chains_each_accepted_fix_to_the_next() -> None:
    stream = [fix(ts=NOW - 30), fix(ts=NOW - 30), fix(ts=NOW - 40), fix(ts=NOW - 20)]
    result = screen({"cg": PREVIOUS}, stream, NOW, AgencyPolicies().for_agency)
    assert [f.ts for f in result.live] == [NOW - 30, NOW - 20]
    assert [f.ts for f in result.history_only] == [NOW - 30, NOW - 40]
    assert result.reasons == {("history_only", "duplicate"): 1, ("history_only", "out_of_order"): 1}
    assert result.dropped == []  # late fixes are kept, not refused
    assert [f.ts for f in result.recorded] == [NOW - 30, NOW - 20, NOW - 30, NOW - 40]


# ---------------------------------------------------------------- laws over streams

streams = st.lists(
    st.builds(
        lambda cg, dt, north, acc: fix(
            caregiver_id=cg, ts=NOW - 1000 + dt, lat=LEEDS[0] + north, acc=acc
        ),
        st.sampled_from(["a", "b"]),
        st.integers(0, 60),
        st.floats(-0.01, 0.01),
        st.one_of(st.none(), st.floats(0.0, 150.0)),
    ),
    max_size=60,
)


def _by_caregiver(fixes: list[FixEvent]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for f in fixes:
        out.setdefault(f.caregiver_id, []).append(f.ts)
    return out


@given(streams)
def test_an_accepted_stream_never_goes_back_in_time(stream: list[FixEvent]) -> None:
    result = screen({}, stream, NOW, AgencyPolicies().for_agency)
    for times in _by_caregiver(result.live).values():
        assert times == sorted(times)
        assert len(times) == len(set(times))  # never the same fix twice


@given(streams, st.lists(st.integers(1, 10), max_size=10))
def test_batches_change_nothing_and_every_fix_is_accounted_for(
    stream: list[FixEvent], cuts: list[int]
) -> None:
    policy_for = AgencyPolicies().for_agency
    whole = screen({}, stream, NOW, policy_for)
    previous: dict[str, Position] = {}
    live: list[FixEvent] = []
    rest = list(stream)
    for size in [*cuts, len(rest)]:
        batch, rest = rest[:size], rest[size:]
        part = screen(previous, batch, NOW, policy_for)
        previous.update({f.caregiver_id: f for f in part.live})
        live += part.live
    assert live == whole.live
    assert len(whole.live) + sum(whole.reasons.values()) == len(stream)
    assert len(whole.live) + len(whole.history_only) + len(whole.dropped) == len(stream)


@given(streams)
def test_a_replayed_stream_accepts_nothing_again(stream: list[FixEvent]) -> None:
    policy_for = AgencyPolicies().for_agency
    first = screen({}, stream, NOW, policy_for)
    last: dict[str, Position] = {f.caregiver_id: f for f in first.live}
    again = screen(last, first.live, NOW, policy_for)
    assert again.live == []
    assert len(again.history_only) == len(first.live)
