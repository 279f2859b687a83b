"""Visit rules: check-in and check-out with evidence, states told to families, alerts that clear
themselves, and (hypothesis) arrived and left alternating per visit."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from careknot.report import parse_time, render, summarise
from geofence.fences import Relation
from geofence.geodesy import LocalFrame
from geofence.transitions import FenceTracker, Fix, TrackerConfig, Transition
from visits.rules import (
    Outcome,
    Visit,
    VisitRecord,
    VisitRules,
    manual,
    next_visit,
    on_fix,
    on_tick,
    on_transition,
)

T0 = 1_760_000_000.0
HOME = (53.8008, -1.5491)
OTHER_HOME = (53.8100, -1.5600)
RULES = VisitRules()


def near(north_m: float, origin: tuple[float, float] = HOME) -> tuple[float, float]:
    lon, lat = LocalFrame(*origin).to_lonlat(0.0, north_m)
    return lat, lon


def visit(
    vid: str = "v1", start: float = 0, minutes: float = 30, patient: str = "pat-a"
) -> VisitRecord:
    home = HOME if patient == "pat-a" else OTHER_HOME
    v = Visit(vid, "ag", patient, "cg1", T0 + start, T0 + start + minutes * 60, *home, ("wash",))
    return VisitRecord(v)


def move(kind: str, t: float, north_m: float = 20.0, patient: str = "pat-a") -> Transition:
    home = HOME if patient == "pat-a" else OTHER_HOME
    fix = Fix("cg1", *near(north_m, home), T0 + t, 8.0)
    return Transition(kind, "cg1", patient, T0 + t, fix)  # type: ignore[arg-type]


class Day:
    """Records and everything told, as the orchestration would keep them."""

    def __init__(self, *records: VisitRecord) -> None:
        self.records = list(records)
        self.told: list[tuple[str, str]] = []
        self.alerts: list[str] = []

    def take(self, out: Outcome) -> Outcome:
        self.records = [out.records.get(r.visit.visit_id, r) for r in self.records]
        self.told += [(r.visit.visit_id, r.state) for r in out.statuses]
        self.alerts += [f"{'+' if a.raised else '-'}{a.key}" for a in out.alerts]
        return out

    def tick(self, t: float) -> Outcome:
        return self.take(on_tick(self.records, T0 + t, RULES))

    def move(self, kind: str, t: float, patient: str = "pat-a", now: float | None = None) -> None:
        tr = move(kind, t, patient=patient)
        self.take(on_transition(self.records, tr, patient, T0 + (now or t), RULES))

    def fix(self, t: float, north_m: float) -> None:
        self.take(on_fix(self.records, Fix("cg1", *near(north_m), T0 + t, 8.0), T0 + t, RULES))

    def states(self) -> list[str]:
        return [s for _v, s in self.told]


# ---------------------------------------------------------------- table of days


def _on_time(d: Day) -> None:
    d.fix(-1800, 3000)
    d.move("arrived", -60)
    d.tick(0)
    d.move("left", 1800)


def _late(d: Day) -> None:
    d.tick(-3600)
    d.tick(601)
    d.move("arrived", 700)


def _missed_then_late_arrival(d: Day) -> None:
    d.tick(601)
    d.tick(1801)
    d.move("arrived", 1700, now=1850)  # her arrival began before the end: it counts


def _early_departure_and_return(d: Day) -> None:
    d.move("arrived", 0)
    d.move("left", 600)
    d.move("arrived", 700)


def _unscheduled_home(d: Day) -> None:
    d.move("arrived", 0, patient="pat-b")
    d.move("left", 900, patient="pat-b")


@pytest.mark.parametrize(
    ("script", "told", "alerts"),
    [
        (_on_time, ["en_route", "arrived", "in_visit", "left"], []),
        (_late, ["scheduled", "arrived"], ["+late:v1", "-late:v1"]),
        (
            _missed_then_late_arrival,
            ["scheduled", "missed", "arrived", "in_visit"],
            ["+late:v1", "-late:v1", "+missed:v1", "-missed:v1"],
        ),
        (
            _early_departure_and_return,
            ["arrived", "left", "arrived", "in_visit"],
            ["+early_departure:v1", "-early_departure:v1"],
        ),
        (
            _unscheduled_home,
            [],
            ["+unscheduled_home:cg1:pat-b", "-unscheduled_home:cg1:pat-b"],
        ),
    ],
)
def test_a_day_of_one_visit(script: object, told: list[str], alerts: list[str]) -> None:
    day = Day(visit())
    script(day)  # type: ignore[operator]
    assert day.states() == told
    assert day.alerts == alerts


def test_check_in_and_out_carry_the_six_facts_of_evv() -> None:
    day = Day(visit())
    day.move("arrived", 30)
    day.move("left", 1790)
    r = day.records[0]
    assert (r.visit.service, r.visit.patient_id, r.visit.caregiver_id) == (
        "home_care",
        "pat-a",
        "cg1",
    )
    assert r.check_in is not None and r.check_out is not None
    assert (r.check_in.at, r.check_out.at) == (T0 + 30, T0 + 1790)
    assert r.check_in.source == "gps" and r.check_in.acc == 8.0
    assert r.check_in.distance_m == pytest.approx(20.0, abs=0.5)
    assert r.check_in.lat is not None and r.check_in.lon is not None
    assert not r.needs_review


def test_a_second_arrival_at_a_home_she_is_in_changes_nothing() -> None:
    day = Day(visit())
    day.move("arrived", 0)
    before = list(day.records)
    day.move("arrived", 60)
    assert day.records == before
    assert day.states() == ["arrived"]


def test_no_roster_no_unscheduled_alert() -> None:
    out = on_transition([], move("arrived", 0), "pat-a", T0, RULES)
    assert out.alerts == [] and out.records == {}


def test_arrival_long_before_the_start_is_not_a_check_in() -> None:
    day = Day(visit(start=7200))
    day.move("arrived", 0)
    assert day.states() == []
    assert day.alerts == ["+unscheduled_home:cg1:pat-a"]


def test_en_route_eta_is_told_again_only_when_it_moves_a_minute() -> None:
    day = Day(visit(start=1800))
    day.fix(0, 3000)
    day.fix(10, 2990)  # a few seconds nearer: not worth telling
    day.fix(20, 1500)
    assert day.states() == ["en_route", "en_route"]
    assert day.records[0].eta_s is not None and day.records[0].eta_s < 300


def test_en_route_only_for_her_next_visit_within_the_lookahead() -> None:
    first, second = visit("v1", start=1800), visit("v2", start=5400, patient="pat-b")
    assert next_visit([first, second], T0, RULES) is first
    assert next_visit([second], T0, RULES) is None  # starts in 1.5 h
    busy = replace(first, state="arrived")
    assert next_visit([busy, second], T0 + 3000, RULES) is None  # she is at a visit


def test_manual_check_in_is_flagged_for_review() -> None:
    out = manual(visit(), "check_in", T0 + 60, "GPS dead", T0 + 60, RULES)
    record = out.records["v1"]
    assert record.state == "arrived" and record.needs_review
    assert record.check_in is not None and record.check_in.reason == "GPS dead"
    assert [s.state for s in out.statuses] == ["arrived"]
    assert manual(record, "check_in", T0 + 70, "again", T0 + 70, RULES).records == {}


def test_arrival_handled_late_tells_arrived_before_in_visit() -> None:
    day = Day(visit())
    day.move("arrived", 10, now=400)
    assert day.states() == ["arrived", "in_visit"]


# ---------------------------------------------------------------- property: alternation


@st.composite
def walks(draw: st.DrawFn) -> list[tuple[float, str, Relation]]:
    """A caregiver wandering between two homes: (seconds, home, relation) with rising times."""
    n = draw(st.integers(1, 60))
    t, out = 0.0, []
    for _ in range(n):
        t += draw(st.sampled_from([5.0, 30.0, 90.0, 400.0]))
        home = draw(st.sampled_from(["pat-a", "pat-b"]))
        out.append((t, home, draw(st.sampled_from(list(Relation)))))
    return out


@settings(max_examples=200, deadline=None)
@given(walk=walks(), starts=st.lists(st.sampled_from([0, 600, 1800, 3600]), min_size=1, max_size=3))
def test_arrived_and_left_alternate_per_visit(
    walk: list[tuple[float, str, Relation]], starts: list[int]
) -> None:
    roster = [
        visit(f"v{i}", start=s, patient="pat-a" if i % 2 == 0 else "pat-b")
        for i, s in enumerate(starts)
    ]
    day = Day(*roster)
    tracker = FenceTracker("cg1", TrackerConfig(min_dwell_in_s=30, min_dwell_out_s=60))
    for t, home, relation in walk:
        fix = Fix("cg1", *(HOME if home == "pat-a" else OTHER_HOME), T0 + t, 5.0)
        seen = {} if relation == Relation.OUTSIDE else {home: relation}
        for tr in tracker.update(fix, seen):
            day.take(on_transition(day.records, tr, tr.fence_id, T0 + t, RULES))
        day.take(on_fix(day.records, fix, T0 + t, RULES))
        day.tick(t)
    for r in roster:
        visits = _presence(day.told, r.visit.visit_id)
        assert all(a != b for a, b in itertools.pairwise(visits)), visits
        assert visits[:1] in ([], ["arrived"])


def _presence(told: Iterable[tuple[str, str]], visit_id: str) -> Sequence[str]:
    return [s for v, s in told if v == visit_id and s in ("arrived", "left")]


# ---------------------------------------------------------------- the report


def test_report_counts_hours_and_punctuality() -> None:
    on_time, late, missed = Day(visit("v1")), Day(visit("v2", start=3600)), Day(visit("v3"))
    on_time.move("arrived", -120)
    on_time.move("left", 1800)
    late.move("arrived", 3600 + 900)
    late.move("left", 3600 + 1800)
    missed.tick(1801)
    records = on_time.records + late.records + missed.records
    (line,) = summarise(records)
    assert (line.visits, line.verified, line.missed, line.on_time, line.late) == (3, 2, 1, 1, 1)
    assert line.scheduled_hours == 1.5
    assert line.verified_hours == round((1920 + 900) / 3600, 2)
    assert line.punctuality == 0.5 and line.mean_lateness_min == 15.0
    csv_text = render(records, "csv", {})
    assert csv_text.splitlines()[0].startswith("caregiver_id,visits,verified,missed")
    body = json.loads(render(records, "json", {"agency": "ag"}))
    facts = body["visits"][0]
    assert {"service", "recipient", "provider", "date", "location", "check_in"} <= facts.keys()
    assert facts["check_in"]["source"] == "gps"


def test_report_times_are_utc_unless_zoned() -> None:
    assert parse_time("2026-01-01") == parse_time("2026-01-01T00:00:00+00:00")
    assert parse_time("2026-01-01T01:00:00+01:00") == parse_time("2026-01-01")
