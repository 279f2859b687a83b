"""The simulated homes' dispensers (``simulators/dispensers.py``): the same for the same seed,
adherence as configured, and every dose taken once however the time is cut; no event loop."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from medication.doses import dose_in_window, doses_between, state_of
from medication.supply import low_supply
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


def test_dispensers_jam_are_tried_twice_and_are_refilled_now_and_then() -> None:
    dispensers = Dispensers(HOMES, 7)
    week = dispensers.said_between(START, START + 7 * 86400)
    kinds = Counter(x.kind for x in week)
    taken = kinds["dose_taken"]
    assert taken == len(dispensers.taken_between(START, START + 7 * 86400))
    assert 0.005 < kinds["dispenser_jam"] / taken < 0.05
    assert 0.005 < kinds["dose_double_attempt"] / taken < 0.05
    assert kinds["dispenser_refilled"] == len(HOMES)  # once a week each
    assert week == Dispensers(HOMES, 7).said_between(START, START + 7 * 86400)


def test_a_second_attempt_falls_in_its_doses_window_so_it_is_never_undeclared() -> None:
    dispensers = Dispensers(HOMES, 7)
    for x in dispensers.said_between(START, START + 7 * 86400):
        if x.kind in ("dose_taken", "dose_double_attempt"):
            doses = doses_between(dispensers.schedules[x.patient_id], x.at - 86400, x.at + 3600)
            assert dose_in_window([d for d in doses if d.name == x.data["dose"]], x.at)


def test_doses_left_count_down_to_a_refill_and_some_homes_run_low() -> None:
    dispensers = Dispensers(HOMES, 7)
    low = set()
    for patient, schedule in dispensers.schedules.items():
        said = [
            x for x in dispensers.said_between(START, START + 14 * 86400) if x.patient_id == patient
        ]
        counts = [x.data["doses_left"] for x in said if "doses_left" in x.data]
        refilled = [x.kind == "dispenser_refilled" for x in said if "doses_left" in x.data]
        for (a, b), refill in zip(itertools.pairwise(counts), refilled[1:], strict=True):
            assert b > a if refill else b < a
        low |= {
            patient
            for x in said
            if "doses_left" in x.data and low_supply(schedule, x.data["doses_left"], x.at)
        }
    assert 0.2 < len(low) / len(HOMES) < 1.0


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(0, 2 * 86400), min_size=1, max_size=6))
def test_everything_a_dispenser_says_is_said_once_however_the_day_is_cut(cuts: list[float]) -> None:
    dispensers = Dispensers(HOMES[:10], 7)
    bounds = [START, *sorted(START + c for c in cuts), START + 2 * 86400]
    pieces = [x for a, b in itertools.pairwise(bounds) for x in dispensers.said_between(a, b)]
    assert pieces == dispensers.said_between(START, START + 2 * 86400)
