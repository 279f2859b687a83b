"""The simulated homes' dispensers (``simulators/dispensers.py``): the same for the same seed,
adherence as configured, and every dose taken once however the time is cut; no event loop."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from medication.doses import doses_between, state_of
from simulators.dispensers import Dispensers, schedule_for, taken_at

START = datetime(2026, 12, 3, tzinfo=UTC).timestamp()
HOMES = [f"leeds-p{i:03d}" for i in range(1, 61)]


def test_the_same_seed_gives_the_same_schedules_and_doses() -> None:
    one, two = Dispensers(HOMES, 7), Dispensers(HOMES, 7)
    assert one.schedules == two.schedules
    assert one.taken_between(START, START + 86400) == two.taken_between(START, START + 86400)
    assert Dispensers(HOMES, 8).schedules != one.schedules
    for schedule in one.schedules.values():
        assert 2 <= len(schedule.doses) <= 3


def test_most_doses_are_taken_on_time_some_late_some_missed() -> None:
    outcomes: dict[str, int] = {}
    for patient in HOMES:
        for dose in doses_between(schedule_for(patient, 7), START, START + 7 * 86400):
            when = taken_at(dose, 7)
            state = state_of(dose, when, dose.closes_at + 1)
            outcomes[state] = outcomes.get(state, 0) + 1
    total = sum(outcomes.values())
    assert set(outcomes) == {"taken", "late", "missed"}
    assert 0.78 < outcomes["taken"] / total < 0.92
    assert 0.05 < outcomes["late"] / total < 0.15
    assert 0.02 < outcomes["missed"] / total < 0.09


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0, 2 * 86400), min_size=1, max_size=6))
def test_every_dose_is_taken_once_however_the_day_is_cut(cuts: list[float]) -> None:
    dispensers = Dispensers(HOMES[:10], 7)
    bounds = [START, *sorted(START + c for c in cuts), START + 2 * 86400]
    pieces = [t for a, b in itertools.pairwise(bounds) for t in dispensers.taken_between(a, b)]
    assert pieces == dispensers.taken_between(START, START + 2 * 86400)
