"""A patient's medication schedule and what became of each dose, as the best dispensers judge
it: Hero calls a dose missed 15 minutes after it was due and untaken; Tynetec calls the
monitoring centre at half its window. Both are settings of a schedule here: each dose has a
window (``window_s``, after which an untaken dose is missed), and ``call_at_fraction`` of it
(half by default) is when an untaken dose is overdue and a person is asked to look.

Silence is the signal: a dose nobody took is missed when its window closes, whatever the
dispenser says or does not say. No I/O and no clock; times of day are read in the schedule's
time zone (``zoneinfo``), so a dose at 08:00 stays at 08:00 across a change of clocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

DoseState = Literal["upcoming", "due", "overdue", "taken", "late", "missed"]
HERO_WINDOW_S = 15 * 60.0
"""Hero: a dose untaken 15 minutes after it was due is missed."""
HALF = 0.5
"""Tynetec: at half its window an untaken dose calls the monitoring centre."""


@dataclass(frozen=True, slots=True)
class ScheduledDose:
    """A dose in the schedule: a name, a time of day, its window and whether missing it is
    critical (a heart tablet, insulin)."""

    name: str
    at: time
    window_s: float = HERO_WINDOW_S
    critical: bool = False


@dataclass(frozen=True, slots=True)
class Schedule:
    patient_id: str
    doses: tuple[ScheduledDose, ...]
    zone: str = "Europe/London"
    call_at_fraction: float = HALF
    on_time_s: float = 5 * 60.0
    """Taken within this of its time, a dose was on time; later in its window, late."""

    def __post_init__(self) -> None:
        if not 0 < self.call_at_fraction <= 1:
            raise ValueError("a dose is overdue within its window")
        if any(d.window_s <= 0 for d in self.doses):
            raise ValueError("a dose needs a window")


@dataclass(frozen=True, slots=True)
class Dose:
    """One dose of one day: ``key`` names it for its patient (``2026-12-03T08:00/name``)."""

    patient_id: str
    key: str
    name: str
    due_at: float
    window_s: float
    overdue_at: float
    on_time_s: float
    critical: bool

    @property
    def closes_at(self) -> float:
        return self.due_at + self.window_s


def doses_between(schedule: Schedule, start: float, end: float) -> list[Dose]:
    """The schedule's doses due in [``start``, ``end``), in time order."""
    zone = ZoneInfo(schedule.zone)
    day = datetime.fromtimestamp(start, zone).date() - timedelta(days=1)
    last = datetime.fromtimestamp(end, zone).date()
    out = []
    while day <= last:
        for scheduled in schedule.doses:
            dose = _dose_on(schedule, scheduled, day, zone)
            if start <= dose.due_at < end:
                out.append(dose)
        day += timedelta(days=1)
    return sorted(out, key=lambda d: (d.due_at, d.name))


def _dose_on(schedule: Schedule, scheduled: ScheduledDose, day: date, zone: ZoneInfo) -> Dose:
    due = datetime.combine(day, scheduled.at, zone).timestamp()
    return Dose(
        schedule.patient_id,
        f"{day.isoformat()}T{scheduled.at.strftime('%H:%M')}/{scheduled.name}",
        scheduled.name,
        due,
        scheduled.window_s,
        due + scheduled.window_s * schedule.call_at_fraction,
        schedule.on_time_s,
        scheduled.critical,
    )


def dose_named(schedule: Schedule, key: str) -> Dose | None:
    """The schedule's dose of that key (``2026-12-03T08:00/name``), or None: no such dose was
    ever scheduled."""
    day_text, _, rest = key.partition("T")
    hhmm, _, name = rest.partition("/")
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        return None
    for scheduled in schedule.doses:
        if scheduled.name == name and scheduled.at.strftime("%H:%M") == hhmm:
            return _dose_on(schedule, scheduled, day, ZoneInfo(schedule.zone))
    return None


def state_of(dose: Dose, taken_at: float | None, now: float) -> DoseState:
    """What the dose is at ``now``, given when it was taken (None: not yet)."""
    if taken_at is not None and taken_at < dose.closes_at:
        return "taken" if taken_at <= dose.due_at + dose.on_time_s else "late"
    if now < dose.due_at:
        return "upcoming"
    if now < dose.overdue_at:
        return "due"
    if now < dose.closes_at:
        return "overdue"
    return "missed"


def dose_taken_now(doses: list[Dose], taken: set[str], at: float) -> Dose | None:
    """The dose a dispenser's "taken" at ``at`` belongs to, when it does not say: the dose in
    its window, not yet taken, due first; None when no window is open."""
    for dose in doses:
        if dose.key not in taken and dose.due_at - dose.on_time_s <= at < dose.closes_at:
            return dose
    return None


def dose_in_window(doses: list[Dose], at: float, among: set[str] | None = None) -> Dose | None:
    """The dose whose window holds ``at`` (from a little before it is due, as a dose taken
    early counts, to its window's close), of those keyed in ``among`` when given: what a
    dispenser's "due", "late" or "second attempt" at ``at`` is about; None when no window is
    open (no dose was scheduled then)."""
    for dose in doses:
        if among is not None and dose.key not in among:
            continue
        if dose.due_at - dose.on_time_s <= at < dose.closes_at:
            return dose
    return None
