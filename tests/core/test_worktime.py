"""UK working-time limits: tables of cases and the laws that hold for any history of work."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch.worktime import (
    DAY_S,
    HOUR_S,
    REFERENCE_S,
    WEEK_S,
    Period,
    daily_rest_ok,
    longest_rest_s,
    merged,
    weekly_average_ok,
    worked_s,
)

NOW = 1_700_000_000.0


def hours_ago(start_h: float, end_h: float) -> Period:
    """Work from ``start_h`` hours ago until ``end_h`` hours ago."""
    return Period(NOW - start_h * HOUR_S, NOW - end_h * HOUR_S)


def weekly(hours_per_week: float, weeks: int = 17) -> list[Period]:
    """``hours_per_week`` of work at the start of each of the last ``weeks`` weeks."""
    starts = [NOW - (k + 1) * WEEK_S + DAY_S for k in range(weeks)]
    return [Period(s, s + hours_per_week * HOUR_S) for s in starts]


@pytest.mark.parametrize(
    ("periods", "start", "end", "expected"),
    [
        ([], 0, 10, []),
        ([Period(1, 3), Period(2, 5)], 0, 10, [Period(1, 5)]),
        ([Period(1, 3), Period(3, 5)], 0, 10, [Period(1, 5)]),
        ([Period(6, 8), Period(1, 2)], 0, 10, [Period(1, 2), Period(6, 8)]),
        ([Period(-5, 2), Period(9, 20)], 0, 10, [Period(0, 2), Period(9, 10)]),
        ([Period(-5, 0), Period(10, 20), Period(4, 4)], 0, 10, []),
    ],
)
def test_merged(periods: list[Period], start: float, end: float, expected: list[Period]) -> None:
    assert merged(periods, start, end) == expected


@pytest.mark.parametrize(
    ("periods", "worked", "rest"),
    [
        ([], 0, 10),
        ([Period(0, 10)], 10, 0),
        ([Period(2, 4)], 2, 6),
        ([Period(1, 3), Period(7, 8)], 3, 4),
        ([Period(1, 3), Period(2, 8)], 7, 2),
    ],
)
def test_worked_and_rest(periods: list[Period], worked: float, rest: float) -> None:
    assert worked_s(periods, 0, 10) == worked
    assert longest_rest_s(periods, 0, 10) == rest


@pytest.mark.parametrize(
    ("hours_per_week", "ok"),
    [(0, True), (40, True), (47.9, True), (48.5, False), (60, False)],
)
def test_48_hour_week_averaged_over_17_weeks(hours_per_week: float, ok: bool) -> None:
    # the response itself (an hour) counts: 47.9 x 17 + 1 is still within 48 x 17
    assert weekly_average_ok(weekly(hours_per_week), NOW) is ok


def test_a_heavy_week_is_averaged_out_by_light_ones() -> None:
    history = [*weekly(30, weeks=16), hours_ago(6 * 24, 6 * 24 - 70)]  # one 70-hour week
    assert weekly_average_ok(history, NOW)


def test_work_before_the_reference_period_does_not_count() -> None:
    long_ago = NOW - REFERENCE_S - WEEK_S
    assert weekly_average_ok([Period(long_ago - 2000 * HOUR_S, long_ago + WEEK_S)], NOW)
    assert not weekly_average_ok([Period(long_ago, NOW - DAY_S)], NOW)


@pytest.mark.parametrize(
    ("history", "ok"),
    [
        ([], True),
        ([hours_ago(8, 0)], True),  # 8 h shift just ended: 15 h rest before it
        ([hours_ago(12, 0)], True),  # 12 h: rest before it 11 h, with the 1 h response
        ([hours_ago(13, 0)], False),  # 13 h + 1 h response: only 10 h rest left in the day
        ([hours_ago(22, 16), hours_ago(6, 0)], False),  # 10 h gap between two shifts
        ([hours_ago(23, 17), hours_ago(5, 0)], True),  # 12 h gap between them
        ([hours_ago(30, 24)], True),
    ],
)
def test_11_hours_daily_rest(history: list[Period], ok: bool) -> None:
    assert daily_rest_ok(history, NOW) is ok


periods = st.lists(
    st.builds(
        lambda start_h, length_h: hours_ago(start_h, start_h - length_h),
        st.floats(0, 24 * 7 * 18),
        st.floats(0, 30),
    ),
    max_size=30,
)


@given(history=periods, more=periods)
def test_more_work_never_makes_a_caregiver_eligible(
    history: list[Period], more: list[Period]
) -> None:
    both = history + more
    assert weekly_average_ok(both, NOW) <= weekly_average_ok(history, NOW)
    assert daily_rest_ok(both, NOW) <= daily_rest_ok(history, NOW)


@given(history=periods)
def test_worked_plus_rest_fits_the_window(history: list[Period]) -> None:
    start, end = NOW - DAY_S, NOW
    assert 0 <= worked_s(history, start, end) <= DAY_S
    assert worked_s(history, start, end) + longest_rest_s(history, start, end) <= DAY_S + 1e-6
