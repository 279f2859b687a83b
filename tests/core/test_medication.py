"""A medication schedule and what became of each dose (``medication/doses.py``): tables of
cases, a change of clocks, and laws over any schedule; no event loop."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel.contracts import DEVICE_EVENT_TYPES, DeviceEventType
from medication.adherence import miss_severity, missed_repeatedly
from medication.administration import Action, day_outcome, refusal_of, taken_as
from medication.attendance import (
    OnShift,
    VisitSpan,
    caregiver_at_hand,
    caregivers_to_tell,
    visit_now,
)
from medication.doses import (
    HERO_WINDOW_S,
    Schedule,
    ScheduledDose,
    dose_in_window,
    dose_named,
    dose_taken_now,
    doses_between,
    state_of,
)
from medication.supply import low_supply, runs_out_at


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


# ---------------------------------------------------------------- doses named by the dispenser


def test_a_dose_is_found_by_its_key_and_an_unscheduled_one_is_not() -> None:
    assert dose_named(SCHEDULE, MORNING.key) == MORNING
    assert dose_named(SCHEDULE, "2026-12-03T08:00/aspirin") is None  # no such medicine
    assert dose_named(SCHEDULE, "2026-12-03T09:00/bisoprolol") is None  # not at that time
    assert dose_named(SCHEDULE, "yesterday/bisoprolol") is None


WINDOW_CASES = [
    # (at, among the taken, the dose the event is about)
    ("07:54", None, None),  # before it may be taken
    ("07:56", None, "bisoprolol"),  # a little early is its window
    ("08:59", None, "bisoprolol"),
    ("09:00", None, None),  # closed: nothing was scheduled then
    ("08:30", set(), None),  # a second attempt at a dose nobody took is about no dose taken
    ("08:30", {"bisoprolol"}, "bisoprolol"),
]


@pytest.mark.parametrize(("when", "taken", "name"), WINDOW_CASES)
def test_the_dose_a_dispenser_event_is_about(
    when: str, taken: set[str] | None, name: str | None
) -> None:
    doses = doses_between(SCHEDULE, at("2026-12-03T00:00"), at("2026-12-04T00:00"))
    among = None if taken is None else {MORNING.key for n in taken if n == MORNING.name}
    found = dose_in_window(doses, at(f"2026-12-03T{when}"), among)
    assert (found.name if found else None) == name


def test_device_event_types_are_kept_in_step() -> None:
    assert set(DEVICE_EVENT_TYPES) == set(get_args(DeviceEventType))
    assert len(DEVICE_EVENT_TYPES) == len(set(DEVICE_EVENT_TYPES))


# ---------------------------------------------------------------- low supply, 72 h ahead

THREE_A_DAY = Schedule(
    "p1",
    tuple(ScheduledDose(f"d{h}", time(h, 0)) for h in (8, 14, 20)),
    zone="UTC",
)
SUPPLY_CASES = [
    # (doses left at 2026-12-03 09:00, runs out at): 72 h from 09:00 hold 9 doses
    (9, None),
    (12, None),
    (8, "2026-12-06T08:00"),  # the ninth dose, the last within 72 h, is not there
    (3, "2026-12-04T14:00"),
    (0, "2026-12-03T14:00"),
    (-1, "2026-12-03T14:00"),  # a dispenser that says nonsense is empty
]


@pytest.mark.parametrize(("left", "runs_out"), SUPPLY_CASES)
def test_a_dispenser_is_almost_empty_72_hours_before_it_runs_out(
    left: int, runs_out: str | None
) -> None:
    now = at("2026-12-03T09:00")
    expected = None if runs_out is None else at(runs_out)
    assert runs_out_at(THREE_A_DAY, left, now) == expected
    assert low_supply(THREE_A_DAY, left, now) == (runs_out is not None)


@given(st.integers(0, 30), st.integers(0, 30))
def test_more_doses_never_run_out_sooner(left: int, more: int) -> None:
    now = at("2026-12-03T09:00")
    fewer, plenty = runs_out_at(THREE_A_DAY, left, now), runs_out_at(THREE_A_DAY, left + more, now)
    assert plenty is None or (fewer is not None and fewer <= plenty)


# ---------------------------------------------------------------- misses that repeat

MISS_CASES = [
    # (the last outcomes, the missed one last; critical medicine; severity)
    (["missed"], False, "major"),
    (["taken", "taken", "missed"], False, "major"),
    (["missed", "taken", "missed"], False, "critical"),  # 2 of the last 3
    (["missed", "missed"], False, "critical"),
    (["missed", "taken", "taken", "missed"], False, "major"),  # the first is 4 doses back
    (["late", "missed"], False, "major"),  # late is taken
    (["missed"], True, "critical"),  # a critical medicine, missed once
]


@pytest.mark.parametrize(("outcomes", "critical", "severity"), MISS_CASES)
def test_a_critical_medicine_or_repeated_misses_raise_a_critical_alarm(
    outcomes: list[str], critical: bool, severity: str
) -> None:
    dose = (
        MORNING
        if critical
        else doses_between(SCHEDULE, at("2026-12-03T20:00"), at("2026-12-03T22:00"))[0]
    )
    assert miss_severity(dose, outcomes) == severity
    assert missed_repeatedly(outcomes) == (severity == "critical" and not critical)


# ---------------------------------------------------------------- the caregiver at hand

H = 3600.0
NOW = at("2026-12-03T12:00")


def visit(cg: str, start_h: float, end_h: float, state: str = "scheduled") -> VisitSpan:
    return VisitSpan(f"v-{cg}-{start_h}", cg, NOW + start_h * H, NOW + end_h * H, state)


AT_HAND_CASES = [
    # (visits to the patient, on shift, told)
    ([visit("ann", -0.5, 0.5, "in_visit"), visit("bea", -0.2, 0.2)], [], ("ann",)),
    ([visit("ann", -3, -2, "left"), visit("bea", 1, 2)], [], ("bea",)),  # 1 h ahead is nearer
    ([visit("ann", -2, -1.5, "left"), visit("bea", 3, 4)], [], ("ann",)),
    ([visit("ann", -1, 1, "missed")], [OnShift("cat")], ("cat",)),  # a missed visit: nobody
    ([visit("ann", 13, 14)], [OnShift("cat"), OnShift("dot", True)], ("dot",)),  # too far
    ([], [OnShift("eve"), OnShift("cat")], ("cat", "eve")),  # none gives medicines: all
    ([], [], ()),
]


@pytest.mark.parametrize(("visits", "on_shift", "told"), AT_HAND_CASES)
def test_who_is_told_of_a_missed_dose(
    visits: list[VisitSpan], on_shift: list[OnShift], told: tuple[str, ...]
) -> None:
    assert caregivers_to_tell(visits, on_shift, NOW) == told


def test_the_caregiver_at_the_home_is_at_hand_whatever_the_roster_says() -> None:
    late_one = visit("ann", -4, -3, "in_visit")  # still there, past her rostered end
    assert caregiver_at_hand([late_one, visit("bea", 0.5, 1)], NOW) == "ann"


VISIT_NOW_CASES = [
    # (her visits, on a visit now)
    ([visit("ann", -0.5, 0.5, "in_visit")], True),
    ([visit("ann", -0.5, 0.5, "scheduled")], True),  # rostered now, check-in not yet seen
    ([visit("ann", -3, -2, "in_visit")], True),  # checked in, still there
    ([visit("ann", -0.5, 0.5, "left")], False),
    ([visit("ann", 1, 2)], False),
    ([visit("bea", -0.5, 0.5, "in_visit")], False),  # someone else's
]


@pytest.mark.parametrize(("visits", "on_visit"), VISIT_NOW_CASES)
def test_a_caregiver_is_on_a_visit_to_the_patient(visits: list[VisitSpan], on_visit: bool) -> None:
    assert (visit_now(visits, "ann", NOW) is not None) == on_visit


# ---------------------------------------------------------------- the administration log

ADMIN_CASES: list[tuple[bool, Action, bool, str, bool, str | None, str | None]] = [
    # (scheduled, action, on a visit, given at, taken before, refused as, made of the dose)
    (True, "administered", True, "08:10", False, None, "late"),
    (True, "administered", True, "08:02", False, None, "taken"),
    (True, "administered", True, "07:30", False, None, "taken"),  # early, on her visit
    (True, "administered", True, "10:00", False, None, None),  # after its window: still missed
    (True, "administered", True, "06:59", False, "not_due", None),
    (True, "administered", True, "13:00", False, "not_due", None),  # 4 h after it closed
    (True, "administered", True, "08:10", True, "already_taken", None),  # an overdose
    (True, "refused", True, "08:10", True, None, None),
    (True, "unavailable", True, "08:10", False, None, None),
    (True, "administered", False, "08:10", False, "not_on_visit", None),
    (False, "administered", True, "08:10", False, "unscheduled_dose", None),
]


@pytest.mark.parametrize(
    ("scheduled", "action", "on_visit", "given", "taken", "refused", "made"), ADMIN_CASES
)
def test_an_administration_entry(
    scheduled: bool,
    action: Action,
    on_visit: bool,
    given: str,
    taken: bool,
    refused: str | None,
    made: str | None,
) -> None:
    dose = MORNING if scheduled else None
    given_at = at(f"2026-12-03T{given}")
    assert refusal_of(dose, action, on_visit, given_at, taken) == refused
    if refused is None:
        assert taken_as(MORNING, action, given_at) == made


DAY_CASES: list[tuple[str | None, list[str], str]] = [
    # (the dose's outcome, caregivers' entries oldest first, what the family reads)
    (None, [], "pending"),
    ("taken", [], "taken"),
    ("late", [], "late"),
    ("missed", [], "missed"),
    ("taken", ["administered"], "administered"),  # given on her visit: her word
    ("missed", ["refused"], "refused"),  # why it was missed
    ("missed", ["unavailable", "refused"], "refused"),  # the last word
    (None, ["unavailable"], "unavailable"),
    ("missed", ["unavailable", "administered"], "administered"),  # given later, in the end
    ("taken", ["refused"], "taken"),  # the dispenser gave it after all
]


@pytest.mark.parametrize(("outcome", "actions", "read"), DAY_CASES)
def test_what_the_family_reads_of_a_dose_today(
    outcome: str | None, actions: list[str], read: str
) -> None:
    assert day_outcome(outcome, actions) == read
