"""The demo city's day of visits: who goes where, when, and how it goes. Pure: no I/O, no clock.

:func:`plan_day` gives a local day (``simulators.residents.ZONE``) of visits for every caregiver
of the city, the same for the same seed and day: each caregiver works round the clock (a demo
may start at any hour), on a chain of visits to homes near the last one, each 15 to 30 real
minutes long and starting on a five-minute mark a few minutes after she can have driven there.
Each visit also carries how it goes (:data:`Outcome`): most ``on_time`` (she sets off as she
is done with the last one, arrives a few minutes before the start, and leaves as it ends; she
waits at the home, checked in), a few ``late`` (she arrives 11 to 14 minutes after the start: a
``late`` alert, cleared by her check-in), one now and then ``early`` (she leaves 7 to 10 minutes
before the end: an ``early_departure`` alert) and, rarely, ``missed`` (she never goes: the visit
is ``missed`` at its end). For a late visit she lingers at the last home before setting off, so
a late visit never follows an early one.

Visits are not compressed by ``CityConfig.time_scale``: the visit keeper judges them in real
time (late 10 minutes after the start, an early departure 5 minutes before the end, dwell times
of a minute or two), so a visit's times are real minutes; ``time_scale`` compresses only the
wandering of caregivers with no rostered visits.

:func:`due_from` is what a city started at a moment rosters and follows: the day's visits from a
few minutes before it (:data:`DUE_S`: some already due, the rest later). :func:`roster_csv` is
their roster as the API's import reads it; :func:`fences_needed` the homes whose default fence
would reach a neighbour's, and the radius each is given.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from simulators.geo import Point, distance_m
from simulators.population import Caregiver, CityConfig, Home, populate
from simulators.residents import ZONE

Outcome = Literal["on_time", "late", "early", "missed"]
OUTCOMES: tuple[tuple[Outcome, float], ...] = (
    ("on_time", 0.82),
    ("late", 0.10),
    ("early", 0.06),
    ("missed", 0.02),
)
LENGTHS_MIN = (15, 20, 20, 30)
"""A visit's rostered length, real minutes (a late or early one is at least 20)."""
SLOT_S = 300.0
EARLIEST_S = 40 * 60.0
"""She arrives no sooner than this before a visit's start (the keeper takes an arrival as its
check-in from an hour before)."""
DUE_S = 300.0
"""A city started at a moment rosters the visits from this long before it: some already due."""
FIRST_ROSTER_S = 3600.0
"""A city started less than this before its day's end rosters the next day's visits at once."""
FIRST_WITHIN_S = 20 * 60.0
"""Each caregiver's first visit of the day starts this soon after midnight, once she can."""
NEAR_PICKS = 8
DEFAULT_FENCE_M = 200.0
"""The visit keeper's default circle about a home (``geofence.fences.DEFAULT_RADIUS_M``)."""
MIN_FENCE_M = 60.0
"""A home fence no smaller than this (a phone indoors is some 10 to 30 m off)."""
MIN_KMH = 25.0
"""Her speed between visits, at least: driving across another home's 200 m circle takes her
less than the minute's dwell that would take her to have arrived there."""
SERVICES = ("personal_care", "medication", "meal", "companionship")


@dataclass(frozen=True, slots=True)
class PlannedVisit:
    """One rostered visit and how it goes: where she comes from, when she arrives and leaves
    (``arrive`` and ``leave`` are None for a ``missed`` one)."""

    visit_id: str
    patient_id: str
    caregiver_id: str
    start: float
    end: float
    home: Point
    origin: Point
    speed_kmh: float
    outcome: Outcome
    arrive: float | None
    leave: float | None
    service: str = "personal_care"

    @property
    def travel_s(self) -> float:
        return distance_m(self.origin, self.home) / (self.speed_kmh / 3.6)

    @property
    def depart(self) -> float | None:
        return None if self.arrive is None else self.arrive - self.travel_s


def day_of(t: float) -> date:
    """The local day (``ZONE``) the moment ``t`` falls in."""
    return datetime.fromtimestamp(t, ZoneInfo(ZONE)).date()


def day_bounds(day: date) -> tuple[float, float]:
    """A local day's first and last moments (epoch s): 23 or 25 hours on a clock change."""
    zone = ZoneInfo(ZONE)
    start = datetime.combine(day, time(), zone).timestamp()
    return start, datetime.combine(day + timedelta(days=1), time(), zone).timestamp()


def first_days(start: float) -> tuple[date, date]:
    """The days a city started at ``start`` rosters first: its own, and the next too when it
    ends within :data:`FIRST_ROSTER_S` (the day's own visits are few by then, or none)."""
    day = day_of(start)
    if day_bounds(day)[1] - start < FIRST_ROSTER_S:
        return day, day + timedelta(days=1)
    return day, day


def visitable(homes: Sequence[Home]) -> list[Home]:
    """The homes a visit may go to: none whose neighbour is so near their fences would meet."""
    near = _nearest(homes)
    return [h for h in homes if near[h.patient_id] >= 2 * MIN_FENCE_M + 10.0]


def plan_day(
    config: CityConfig, homes: Sequence[Home], caregivers: Sequence[Caregiver], day: date
) -> list[PlannedVisit]:
    """Every caregiver's visits of ``day``, in start order; the same for the same seed and day."""
    start, end = day_bounds(day)
    places = visitable(homes) or list(homes)
    out = []
    for caregiver in caregivers:
        out += _chain(config.seed, caregiver.id, places, day, start, end)
    out.sort(key=lambda v: (v.start, v.visit_id))
    return out


def _chain(
    seed: int, caregiver_id: str, places: Sequence[Home], day: date, start: float, end: float
) -> list[PlannedVisit]:
    rng = random.Random(f"{seed}:visits:{day.isoformat()}:{caregiver_id}")
    speed = rng.uniform(MIN_KMH, 40.0)
    here = rng.choice(places)
    free_at = start + rng.uniform(0.0, FIRST_WITHIN_S / 2)  # when she can leave ``here``
    rostered_to = start  # her last visit's end: visits do not overlap
    out: list[PlannedVisit] = []
    while True:
        picks = rng.sample(list(places), k=min(NEAR_PICKS, len(places)))
        there = min((h for h in picks if h != here), key=lambda h: distance_m(here.at, h.at))
        travel = distance_m(here.at, there.at) / (speed / 3.6)
        earliest = max(free_at, rostered_to) + travel + rng.uniform(60.0, 300.0)
        begins = math.ceil(earliest / SLOT_S) * SLOT_S
        outcome = _outcome(rng)
        if outcome == "late" and out and out[-1].outcome == "early":
            outcome = "on_time"  # she would wait at the home she left early: not early then
        minutes = rng.choice(LENGTHS_MIN)
        if outcome in ("late", "early"):
            minutes = max(minutes, 20)
        ends = begins + minutes * 60.0
        if ends > end:
            return out
        arrive: float | None
        leave: float | None
        if outcome == "missed":
            arrive = leave = None
        else:
            # she sets off when done with the last one and waits there (checked in early)
            arrive = max(free_at + travel, begins - EARLIEST_S)
            if outcome == "late":
                arrive = begins + rng.uniform(11 * 60.0, 14 * 60.0)
            leave = ends + rng.uniform(0.0, 90.0)
            if outcome == "early":
                leave = ends - rng.uniform(7 * 60.0, 10 * 60.0)
        visit_id = f"{caregiver_id}-{day.strftime('%Y%m%d')}-{len(out) + 1:02d}"
        service = rng.choice(SERVICES)
        out.append(
            PlannedVisit(
                visit_id,
                there.patient_id,
                caregiver_id,
                begins,
                ends,
                there.at,
                here.at,
                speed,
                outcome,
                arrive,
                leave,
                service,
            )
        )
        rostered_to = ends
        if leave is not None:
            here, free_at = there, leave


def _outcome(rng: random.Random) -> Outcome:
    draw, total = rng.random(), 0.0
    for outcome, share in OUTCOMES:
        total += share
        if draw < total:
            return outcome
    return "on_time"


def due_from(visits: Iterable[PlannedVisit], since: float) -> list[PlannedVisit]:
    """The visits a city started at ``since`` rosters and follows: those starting from
    :data:`DUE_S` before it."""
    return [v for v in visits if v.start >= since - DUE_S]


def roster_csv(visits: Iterable[PlannedVisit]) -> bytes:
    """The visits as the API's CSV import reads them (times ISO 8601 with their offset)."""
    zone = ZoneInfo(ZONE)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["visit_id", "patient_id", "caregiver_id", "starts_at", "ends_at", "service"])
    for v in visits:
        starts = datetime.fromtimestamp(v.start, zone).isoformat()
        ends = datetime.fromtimestamp(v.end, zone).isoformat()
        writer.writerow([v.visit_id, v.patient_id, v.caregiver_id, starts, ends, v.service])
    return buffer.getvalue().encode()


def fences_needed(homes: Sequence[Home]) -> dict[str, float]:
    """Radii (m) for the homes whose default circle would reach a neighbour's: half the way to
    the nearest, no less than :data:`MIN_FENCE_M`, by patient id."""
    out = {}
    for patient_id, nearest in _nearest(homes).items():
        if nearest < 2 * DEFAULT_FENCE_M:
            out[patient_id] = max(MIN_FENCE_M, float(math.floor(nearest / 2 - 5.0)))
    return out


def _nearest(homes: Sequence[Home]) -> dict[str, float]:
    """Each home's distance to its nearest neighbour (m)."""
    return {
        h.patient_id: min((distance_m(h.at, o.at) for o in homes if o is not h), default=math.inf)
        for h in homes
    }


def first_family(config: CityConfig, now: float) -> str:
    """The patient whose family sees the most of a visit soon after a city starts at ``now``:
    the home a caregiver reaches first a minute or more from now, on time (its visit told
    ``en_route`` from her first fix, then ``arrived``); the first home if none."""
    homes, caregivers = populate(config)
    due = due_from(plan_day(config, homes, caregivers, day_of(now)), now)
    coming = [v for v in due if v.outcome == "on_time" and v.arrive and v.arrive >= now + 60.0]
    first = min(coming, key=lambda v: (v.arrive or 0.0, v.visit_id), default=None)
    return homes[0].patient_id if first is None else first.patient_id
