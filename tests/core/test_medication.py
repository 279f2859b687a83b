"""A medication schedule and what became of each dose (``medication/doses.py``): tables of
cases, a change of clocks, and laws over any schedule; no event loop."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medication.doses import (
    HERO_WINDOW_S,
    Schedule,
    ScheduledDose,
    dose_taken_now,
    doses_between,
    state_of,
)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


HEART = ScheduledDose("bisoprolol", time(8, 0), window_s=60 * 60, critical=True)
SCHEDULE = Schedule("p1", (HEART, ScheduledDose("statin", time(21, 0))), zone="UTC")
(MORNING,) = [d for d in doses_between(SCHEDULE, at("2026-12-03T00:00"), at("2026-12-04T00:00"))
              if d.name == "bisoprolol"]  # fmt: skip

CASES = [
    # (taken at, now, state): the dose is due 08:00, window an hour, overdue at 08:30
    (None, "07:59", "upcoming"),
    (None, "08:00", "due"),
    (None, "08:29", "due"),
    (None, "08:30", "overdue"),
    (None, "08:59", "overdue"),
    (None, "09:00", "missed"),
    ("07:57", "09:30", "taken"),  # a little early is on time
    ("08:05", "09:30", "taken"),
    ("08:06", "09:30", "late"),
    ("08:59", "09:30", "late"),
    ("09:00", "09:30", "missed"),  # taken after its window closed: missed all the same
]


@pytest.mark.parametrize(("taken", "now", "state"), CASES)
def test_what_a_dose_is(taken: str | None, now: str, state: str) -> None:
    when = None if taken is None else at(f"2026-12-03T{taken}")
    assert state_of(MORNING, when, at(f"2026-12-03T{now}")) == state


def test_a_dose_keeps_its_time_of_day_across_a_change_of_clocks() -> None:
    london = Schedule("p1", (HEART,), zone="Europe/London")
    saturday, sunday = doses_between(london, at("2026-03-28T00:00"), at("2026-03-30T00:00"))
    assert (saturday.key, sunday.key) == (
        "2026-03-28T08:00/bisoprolol",
        "2026-03-29T08:00/bisoprolol",
    )
    assert sunday.due_at - saturday.due_at == 23 * 3600  # the clocks went forward
    assert datetime.fromtimestamp(sunday.due_at, UTC).hour == 7  # 08:00 BST


def test_hero_and_tynetec_are_settings() -> None:
    hero = Schedule("p1", (ScheduledDose("x", time(8, 0)),), zone="UTC")
    (dose,) = doses_between(hero, at("2026-12-03T00:00"), at("2026-12-04T00:00"))
    assert dose.closes_at - dose.due_at == HERO_WINDOW_S
    assert dose.overdue_at - dose.due_at == HERO_WINDOW_S / 2  # the call at half its window
    with pytest.raises(ValueError):
        Schedule("p1", (HEART,), call_at_fraction=0.0)


def test_a_taken_the_dispenser_does_not_name_goes_to_the_open_window() -> None:
    doses = doses_between(SCHEDULE, at("2026-12-03T00:00"), at("2026-12-04T00:00"))
    assert dose_taken_now(doses, set(), at("2026-12-03T08:40")) == MORNING
    assert dose_taken_now(doses, {MORNING.key}, at("2026-12-03T08:40")) is None
    assert dose_taken_now(doses, set(), at("2026-12-03T12:00")) is None


@given(
    st.lists(
        st.tuples(st.integers(0, 23), st.integers(0, 59)), min_size=1, max_size=5, unique=True
    ),
    st.integers(1, 14),
)
def test_each_dose_once_a_day_in_order(times: list[tuple[int, int]], days: int) -> None:
    schedule = Schedule(
        "p1",
        tuple(ScheduledDose(f"d{i}", time(h, m)) for i, (h, m) in enumerate(times)),
        zone="Europe/London",
    )
    start = at("2026-10-20T00:00")  # the clocks go back on 2026-10-25
    doses = doses_between(schedule, start, start + days * 86400)
    keys = [d.key for d in doses]
    assert len(keys) == len(set(keys))
    assert [d.due_at for d in doses] == sorted(d.due_at for d in doses)
    assert days * len(times) - len(times) <= len(doses) <= days * len(times) + len(times)
    assert all(start <= d.due_at < start + days * 86400 for d in doses)
