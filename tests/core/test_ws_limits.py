"""A connection's frame budgets, pure: each kind of frame has its own, a burst is let through
and then the rate, a client that goes on over budget is closed, one that slows down is not."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ws_gateway.limits import (
    LANES,
    RATE_LIMITED,
    Bucket,
    FrameBudget,
    FrameLimits,
    OverBudget,
    Verdict,
    lane_of,
)

LIMITS = FrameLimits(rate=2.0, burst=4)


def verdicts(budget: FrameBudget, lane: str, times: list[float]) -> list[Verdict]:
    return [budget.admit(lane_of(lane), t) for t in times]


def test_frames_are_told_apart_by_their_kind() -> None:
    assert [lane_of(t) for t in ("accept", "decline", "assign", "resolve")] == [
        "answers",
        "answers",
        "commands",
        "commands",
    ]
    assert {lane_of(t) for t in ("ping", "resume", "auth", "dance", None)} == {"other"}


def test_a_burst_goes_through_then_the_rate() -> None:
    budget = FrameBudget(LIMITS, now=0.0)
    assert verdicts(budget, "ping", [0.0] * 5) == [Verdict.ADMIT] * 4 + [Verdict.LIMIT]
    assert verdicts(budget, "ping", [0.5, 0.5]) == [Verdict.ADMIT, Verdict.LIMIT]  # 2/s


def test_a_flood_of_one_kind_leaves_the_others_their_budget() -> None:
    budget = FrameBudget(LIMITS, now=0.0)
    verdicts(budget, "ping", [0.0] * 6)
    assert verdicts(budget, "accept", [0.0] * 4) == [Verdict.ADMIT] * 4
    verdicts(budget, "assign", [0.0] * 6)
    fresh = FrameBudget(LIMITS, now=0.0)
    assert verdicts(budget, "decline", [1.0]) == verdicts(fresh, "decline", [1.0])


def test_a_client_that_goes_on_over_budget_is_closed() -> None:
    budget = FrameBudget(LIMITS, now=0.0)
    said = verdicts(budget, "ping", [0.0] * 9)
    assert said == [Verdict.ADMIT] * 4 + [Verdict.LIMIT] * 4 + [Verdict.CLOSE]


def test_a_frame_charged_over_budget_is_refused_then_closes() -> None:
    budget = FrameBudget(FrameLimits(rate=1.0, burst=1), now=0.0)
    budget.charge("resolve", 0.0)
    with pytest.raises(OverBudget) as refused:
        budget.charge("assign", 0.0)
    assert (refused.value.reason, refused.value.closing) == (RATE_LIMITED, False)
    assert "commands" in refused.value.detail
    with pytest.raises(OverBudget) as closing:
        budget.charge(None, 0.0)  # "other" has its token: no refusal
        budget.charge(None, 0.0)
    assert closing.value.closing


@given(st.lists(st.floats(0.5, 10.0), min_size=1, max_size=200))
def test_a_client_within_the_rate_is_never_refused(gaps: list[float]) -> None:
    budget, now = FrameBudget(LIMITS, now=0.0), 0.0
    for gap in gaps:
        now += gap
        assert all(budget.admit(lane, now) is Verdict.ADMIT for lane in LANES)


@given(st.lists(st.floats(0.0, 1.0), max_size=300))
def test_a_bucket_never_gives_more_than_its_burst_and_rate(gaps: list[float]) -> None:
    bucket, now, taken = Bucket(rate=3.0, burst=5, tokens=5, at=0.0), 0.0, 0
    for gap in gaps:
        now += gap
        taken += bucket.take(now)
        assert taken <= 5 + 3.0 * now + 1e-9
