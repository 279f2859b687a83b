"""Visits: the roster meets the transitions. Pure, with the time passed in.

A :class:`VisitRecord` is one scheduled visit (:class:`Visit`) and what is known of it: its
state, the check-in and check-out with their :class:`Evidence` (which, with the visit, gives the
six facts of electronic visit verification: service, recipient, date, location, provider, start
and end), the alerts open on it, and what the family was last told.

States: ``scheduled`` → ``en_route`` (her next visit, within ``lookahead_s`` of its start, with
an ETA) → ``arrived`` (checked in) → ``in_visit`` (the visit has started and she has been there
``in_visit_after_s``) → ``left`` (checked out). ``missed``: not checked in by
``min(end, start + missed_after_s)``; a late check-in still counts. A return before the end
after an early ``left`` reopens the visit (the first check-in stands).

Alerts clear themselves when their condition ends: ``late`` (not checked in ``late_after_s``
after the start; cleared by the check-in, or superseded by ``missed``), ``missed`` (cleared by a
late check-in), ``early_departure`` (left more than ``early_departure_s`` before the end;
cleared by a return), ``unscheduled_home`` (she arrived at a home where none of her visits is
due, while she has visits rostered: raised on arrival, cleared when she leaves).

Entry points return an :class:`Outcome`: the changed records, the statuses to tell families (in
the order the states were reached) and the alert changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from dispatch.eta import StraightLineModel, TravelModel
from geofence.geodesy import haversine_m
from geofence.transitions import Fix, Transition

VisitState = Literal["scheduled", "en_route", "arrived", "in_visit", "left", "missed"]
AlertKind = Literal["late", "missed", "early_departure", "unscheduled_home"]
EvidenceSource = Literal["gps", "manual"]
WAITING: tuple[VisitState, ...] = ("scheduled", "en_route")
PRESENT: tuple[VisitState, ...] = ("arrived", "in_visit")


@dataclass(frozen=True, slots=True)
class Visit:
    """A rostered visit: who, to whom, where (the home), when, what for."""

    visit_id: str
    agency_id: str
    patient_id: str
    caregiver_id: str
    start: float
    end: float
    lat: float
    lon: float
    tasks: tuple[str, ...] = ()
    service: str = "home_care"


@dataclass(frozen=True, slots=True)
class Evidence:
    """How a check-in or check-out is known: the fix that confirmed it once the dwell had passed
    (its position, accuracy and time ``fix_ts``), or a person's word (``manual``, ``reason``).
    ``at`` is when it began: the first fix inside (or outside)."""

    at: float
    lat: float | None = None
    lon: float | None = None
    acc: float | None = None
    distance_m: float | None = None
    """From the fix to the home's anchor."""
    source: EvidenceSource = "gps"
    reason: str = ""
    fix_ts: float | None = None


@dataclass(frozen=True, slots=True)
class VisitRecord:
    visit: Visit
    state: VisitState = "scheduled"
    check_in: Evidence | None = None
    check_out: Evidence | None = None
    eta_s: float | None = None
    alerts: frozenset[AlertKind] = frozenset()
    told: VisitState | None = None
    told_eta_s: float | None = None
    version: int = 0

    @property
    def needs_review(self) -> bool:
        """A manual check-in or check-out is flagged for a person to review."""
        return any(e is not None and e.source == "manual" for e in (self.check_in, self.check_out))


@dataclass(frozen=True, slots=True)
class VisitRules:
    late_after_s: float = 600.0
    missed_after_s: float = 3600.0
    early_departure_s: float = 300.0
    lookahead_s: float = 3600.0
    """A visit is announced, and can be ``en_route``, from this long before its start."""
    arrive_early_s: float = 3600.0
    """An arrival counts as a visit's check-in from this long before its start."""
    in_visit_after_s: float = 60.0
    eta_step_s: float = 60.0
    """An ``en_route`` family is told again when the ETA moves by this much."""
    travel: TravelModel = field(default_factory=StraightLineModel)

    def missed_at(self, visit: Visit) -> float:
        return min(visit.end, visit.start + self.missed_after_s)


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert ``raised`` (or cleared) at ``at``; ``key`` names the condition."""

    kind: AlertKind
    raised: bool
    agency_id: str
    patient_id: str
    caregiver_id: str
    visit_id: str | None
    at: float

    @property
    def key(self) -> str:
        if self.visit_id is not None:
            return f"{self.kind}:{self.visit_id}"
        return f"{self.kind}:{self.caregiver_id}:{self.patient_id}"


@dataclass(slots=True)
class Outcome:
    records: dict[str, VisitRecord] = field(default_factory=dict)
    """Changed records by visit id (the stored version is the one they were read at)."""
    statuses: list[VisitRecord] = field(default_factory=list)
    alerts: list[AlertChange] = field(default_factory=list)

    def __bool__(self) -> bool:
        """Whether there is anything to save, alert or tell."""
        return bool(self.records or self.statuses or self.alerts)

    def merge(self, other: Outcome) -> None:
        self.records.update(other.records)
        self.statuses += other.statuses
        self.alerts += other.alerts


# ---------------------------------------------------------------- entry points


def on_tick(records: Iterable[VisitRecord], now: float, rules: VisitRules) -> Outcome:
    """Time passing: announcements, ``in_visit``, ``missed``, late alerts."""
    out = Outcome()
    for record in records:
        _settle(out, record, now, rules)
    return out


def on_fix(records: Sequence[VisitRecord], fix: Fix, now: float, rules: VisitRules) -> Outcome:
    """Her position: her next visit goes ``en_route`` with an ETA from where she is."""
    out = Outcome()
    following = next_visit(records, now, rules)
    for record in records:
        moved = record
        if record is following:
            distance = haversine_m(fix.lat, fix.lon, record.visit.lat, record.visit.lon)
            moved = replace(record, state="en_route", eta_s=round(rules.travel.eta_s(distance)))
        _settle(out, moved, now, rules, before=record)
    return out


def on_transition(
    records: Sequence[VisitRecord],
    transition: Transition,
    patient_id: str,
    now: float,
    rules: VisitRules,
) -> Outcome:
    """An ``arrived`` or ``left`` at ``patient_id``'s home (``passed`` changes nothing)."""
    out = Outcome()
    if transition.kind == "arrived":
        _arrive(out, records, transition, patient_id, now, rules)
    elif transition.kind == "left":
        _leave(out, records, transition, patient_id, now, rules)
    return out


def manual(
    record: VisitRecord,
    kind: Literal["check_in", "check_out"],
    at: float,
    reason: str,
    now: float,
    rules: VisitRules,
) -> Outcome:
    """A check-in or check-out given by a person when GPS failed; flagged for review."""
    out = Outcome()
    evidence = Evidence(at=at, source="manual", reason=reason)
    if kind == "check_in" and record.state not in PRESENT:
        moved = replace(record, state="arrived", check_in=evidence, check_out=None, eta_s=None)
    elif kind == "check_out" and record.state in PRESENT:
        moved = replace(record, state="left", check_out=evidence)
    else:
        return out
    _settle(out, moved, now, rules, before=record)
    return out


def next_visit(records: Sequence[VisitRecord], now: float, rules: VisitRules) -> VisitRecord | None:
    """The visit she is heading for: none while she is at one; else the earliest waiting visit
    whose start is within ``lookahead_s`` and which is not yet missed."""
    if any(r.state in PRESENT for r in records):
        return None
    due = [
        r
        for r in records
        if r.state in WAITING
        and r.visit.start - rules.lookahead_s <= now < rules.missed_at(r.visit)
    ]
    return min(due, key=lambda r: (r.visit.start, r.visit.visit_id), default=None)


def evidence_of(transition: Transition, visit: Visit) -> Evidence:
    fix = transition.fix
    distance = haversine_m(fix.lat, fix.lon, visit.lat, visit.lon)
    return Evidence(transition.at, fix.lat, fix.lon, fix.acc, round(distance, 1), fix_ts=fix.ts)


def alert_conditions(record: VisitRecord, now: float, rules: VisitRules) -> frozenset[AlertKind]:
    """The visit-bound alerts whose condition holds now."""
    visit, wanted = record.visit, set[AlertKind]()
    if record.state in WAITING and now >= visit.start + rules.late_after_s:
        wanted.add("late")
    if record.state == "missed":
        wanted.add("missed")
    out = record.check_out
    if record.state == "left" and out is not None and out.at < visit.end - rules.early_departure_s:
        wanted.add("early_departure")
    return frozenset(wanted)


# ---------------------------------------------------------------- steps


def _arrive(
    out: Outcome,
    records: Sequence[VisitRecord],
    t: Transition,
    patient_id: str,
    now: float,
    rules: VisitRules,
) -> None:
    mine = [r for r in records if r.visit.patient_id == patient_id]
    if any(r.state in PRESENT for r in mine):
        return
    due = [r for r in mine if r.visit.start - rules.arrive_early_s <= t.at <= r.visit.end]
    record = min(due, key=lambda r: (r.visit.start, r.visit.visit_id), default=None)
    if record is None:
        if records:
            out.alerts.append(_unscheduled(records[0].visit, patient_id, t, raised=True))
        return
    check_in = record.check_in if record.state == "left" else None
    check_in = check_in or evidence_of(t, record.visit)
    arrived = replace(record, state="arrived", check_in=check_in, check_out=None, eta_s=None)
    _settle(out, arrived, now, rules, before=record)


def _leave(
    out: Outcome,
    records: Sequence[VisitRecord],
    t: Transition,
    patient_id: str,
    now: float,
    rules: VisitRules,
) -> None:
    present = [r for r in records if r.visit.patient_id == patient_id and r.state in PRESENT]
    if records and not present:
        out.alerts.append(_unscheduled(records[0].visit, patient_id, t, raised=False))
    for record in present:
        left = replace(record, state="left", check_out=evidence_of(t, record.visit))
        _settle(out, left, now, rules, before=record)


def _unscheduled(any_visit: Visit, patient_id: str, t: Transition, *, raised: bool) -> AlertChange:
    return AlertChange(
        "unscheduled_home", raised, any_visit.agency_id, patient_id, t.caregiver_id, None, t.at
    )


def _settle(
    out: Outcome,
    record: VisitRecord,
    now: float,
    rules: VisitRules,
    before: VisitRecord | None = None,
) -> None:
    """Tell the state reached, move on with time, open and clear alerts, tell again; put the
    record in ``out`` if it differs from ``before`` (default: itself as given)."""
    before = before or record
    record = _advance(_tell(out, record, now, rules), now, rules)
    wanted = alert_conditions(record, now, rules)
    v = record.visit
    for kind in sorted(wanted ^ record.alerts):
        raised = kind in wanted
        ids = (v.agency_id, v.patient_id, v.caregiver_id, v.visit_id)
        out.alerts.append(AlertChange(kind, raised, *ids, now))
    record = _tell(out, replace(record, alerts=wanted), now, rules)
    if record != before:
        out.records[v.visit_id] = record


def _advance(record: VisitRecord, now: float, rules: VisitRules) -> VisitRecord:
    visit = record.visit
    if record.state in WAITING and now >= rules.missed_at(visit):
        return replace(record, state="missed", eta_s=None)
    check_in = record.check_in
    settled = check_in is not None and now >= check_in.at + rules.in_visit_after_s
    if record.state == "arrived" and settled and now >= visit.start:
        return replace(record, state="in_visit")
    return record


def _tell(out: Outcome, record: VisitRecord, now: float, rules: VisitRules) -> VisitRecord:
    if record.state == "scheduled" and now < record.visit.start - rules.lookahead_s:
        return record
    moved = record.eta_s is not None and (
        record.told_eta_s is None or abs(record.eta_s - record.told_eta_s) >= rules.eta_step_s
    )
    if record.state == record.told and not (record.state == "en_route" and moved):
        return record
    told = replace(record, told=record.state, told_eta_s=record.eta_s)
    out.statuses.append(told)
    return told
