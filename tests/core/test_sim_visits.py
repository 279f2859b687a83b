"""The demo city's day of visits: seeded, at the agency's homes, within the day, the mix of how
they go as designed, the roster CSV the API reads, and caregivers driving to them."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from api.visit_import import ImportRow, read_roster
from simulators.city import City
from simulators.geo import distance_m
from simulators.population import AGENCY_ID, CityConfig, populate
from simulators.visit_plan import (
    DUE_S,
    MIN_FENCE_M,
    OUTCOMES,
    PlannedVisit,
    day_bounds,
    day_of,
    due_from,
    fences_needed,
    first_days,
    first_family,
    plan_day,
    roster_csv,
    visitable,
)

DAY = date(2026, 3, 12)
CONFIG = CityConfig(seed=7)


def planned(config: CityConfig = CONFIG, day: date = DAY) -> list[PlannedVisit]:
    homes, caregivers = populate(config)
    return plan_day(config, homes, caregivers, day)


@pytest.mark.parametrize(
    ("started", "days"),
    [
        ("2026-03-12T00:00:00", (DAY, DAY)),
        ("2026-03-12T22:59:59", (DAY, DAY)),
        ("2026-03-12T23:00:01", (DAY, date(2026, 3, 13))),
        ("2026-03-12T23:59:59", (DAY, date(2026, 3, 13))),
        ("2026-03-28T23:30:00", (date(2026, 3, 28), date(2026, 3, 29))),  # a 23-hour day next
    ],
)
def test_a_city_started_in_its_days_last_hour_rosters_the_next_day_too(
    started: str, days: tuple[date, date]
) -> None:
    """Started near midnight, the day's own visits are few or none: the next day's come at once."""
    zone = ZoneInfo("Europe/London")
    assert first_days(datetime.fromisoformat(started).replace(tzinfo=zone).timestamp()) == days


def test_same_seed_same_day_same_plan() -> None:
    assert planned() == planned()
    assert planned() != planned(CityConfig(seed=8))
    assert planned() != planned(day=date(2026, 3, 13))


def test_visits_are_the_agencys_caregivers_at_its_homes_within_the_day() -> None:
    homes, caregivers = populate(CONFIG)
    plan = planned()
    start, end = day_bounds(DAY)
    places = {h.patient_id: h.at for h in visitable(homes)}
    assert len({v.visit_id for v in plan}) == len(plan)
    assert {v.caregiver_id for v in plan} == {c.id for c in caregivers}
    for v in plan:
        assert v.patient_id in places and v.home == places[v.patient_id]
        assert v.visit_id.startswith(f"{v.caregiver_id}-20260312-")
        assert start <= v.start < v.end <= end
        assert 15 * 60 <= v.end - v.start <= 30 * 60
        assert v.start % 300 == 0
    assert all(v.patient_id.startswith(f"{AGENCY_ID}-p") for v in plan)


def test_a_caregivers_visits_do_not_overlap_and_she_can_drive_between_them() -> None:
    by: dict[str, list[PlannedVisit]] = {}
    for v in planned():
        by.setdefault(v.caregiver_id, []).append(v)
    for visits in by.values():
        assert len(visits) > 24  # round the clock, a demo may start at any hour
        for a, b in itertools.pairwise(visits):
            assert a.end <= b.start
        gone = [v for v in visits if v.arrive is not None]
        for a, b in itertools.pairwise(gone):
            assert a.leave is not None and b.depart is not None
            assert b.origin == a.home and b.depart >= a.leave - 1e-6


def test_the_mix_of_how_visits_go_is_as_designed() -> None:
    plan = planned()
    seen = Counter(v.outcome for v in plan)
    for outcome, share in OUTCOMES:
        assert seen[outcome] / len(plan) == pytest.approx(share, abs=0.03), outcome
    for v in plan:
        if v.outcome == "missed":
            assert v.arrive is None and v.leave is None
            continue
        assert v.arrive is not None and v.leave is not None
        assert v.arrive < v.leave
        if v.outcome == "on_time":
            assert v.start - 3600 < v.arrive <= v.start and v.leave >= v.end
        elif v.outcome == "late":
            assert v.start + 600 < v.arrive < v.end - 300 and v.leave >= v.end
        else:  # early: she leaves more than early_departure_s (300 s) before the end
            assert v.arrive <= v.start and v.start < v.leave < v.end - 300


def test_a_city_started_mid_day_rosters_from_a_few_minutes_before() -> None:
    plan = planned()
    noon = datetime(2026, 3, 12, 12, 0).timestamp()
    due = due_from(plan, noon)
    assert due and min(v.start for v in due) >= noon - DUE_S
    assert any(v.start <= noon for v in due)  # some already due
    assert any(v.start < noon + 600 for v in due)  # and more within minutes
    assert set(due_from(plan, noon + 3600)) <= set(due)  # started again: nothing new
    assert day_of(noon) == DAY


def test_the_roster_csv_reads_back_as_the_visits() -> None:
    due = planned()[:40]
    rows = read_roster("city", roster_csv(due))
    plans = [r.plan for r in rows if isinstance(r, ImportRow)]
    assert len(plans) == len(rows)
    got = [(p.id, p.patient_id, p.caregiver_id, p.starts_at, p.ends_at) for p in plans]
    assert got == [(v.visit_id, v.patient_id, v.caregiver_id, v.start, v.end) for v in due]


def test_fences_keep_neighbours_apart() -> None:
    homes, _ = populate(CONFIG)
    fences = fences_needed(homes)
    at = {h.patient_id: h.at for h in homes}
    assert fences and all(MIN_FENCE_M <= r < 200 for r in fences.values())
    for h in visitable(homes):
        mine = fences.get(h.patient_id, 200.0)
        for other in homes:
            if other is not h:
                theirs = fences.get(other.patient_id, 200.0)
                assert distance_m(at[h.patient_id], other.at) > mine + theirs - 1.0


def test_caregivers_drive_to_their_visits_and_stay_as_planned() -> None:
    config = CityConfig(caregivers=8, homes=60, seed=3)
    start = datetime(2026, 3, 12, 9, 2).timestamp()
    city = City(config, start)
    due = due_from(plan_day(config, city.homes, city.caregivers, DAY), start)
    city.follow(due, start)
    index = {c.id: i for i, c in enumerate(city.caregivers)}
    checked = Counter[str]()
    positions = {}
    for step in range(int(3 * 3600 / 5)):
        t = start + step * 5.0
        for i in range(len(city.caregivers)):
            positions[i, t] = city.where(i, t)[0]
    ends = start + 3 * 3600 - 5
    for v in due:
        if v.end > ends or v.arrive is None or v.leave is None:
            continue
        i = index[v.caregiver_id]

        def at_home(t: float, v: PlannedVisit = v, i: int = i) -> bool:
            t = start + (t - start) // 5 * 5
            return distance_m(positions[i, t], v.home) < 1.0

        if v.start - 3600 > start:  # she is on her plan: there from arrival to leaving
            assert at_home(v.arrive + 10) and at_home(v.leave - 10), v
            if v.outcome == "early":
                assert not at_home(v.leave + 60)
            checked[v.outcome] += 1
    assert checked["on_time"] > 20 and checked["late"] + checked["early"] > 0


def test_the_family_shown_first_is_of_the_home_reached_first() -> None:
    homes, caregivers = populate(CONFIG)
    noon = datetime(2026, 3, 12, 12, 0).timestamp()
    patient = first_family(CONFIG, noon)
    coming = [
        v
        for v in due_from(plan_day(CONFIG, homes, caregivers, DAY), noon)
        if v.outcome == "on_time" and v.arrive is not None and v.arrive >= noon + 60
    ]
    first = min(coming, key=lambda v: v.arrive or 0.0)
    assert patient == first.patient_id and first.arrive is not None
    assert first.arrive < noon + 600  # she is there within minutes
