"""Simulated residents: each home's person living her days, her ambient sensors' events, and
the days that go wrong, with the moment each began. The same for the same seed; pure (no I/O,
no clock, no asyncio): the days and their times are passed in.

A resident wakes (``bed_out``), washes, has breakfast, lunch and dinner in the kitchen (the
fridge door opens and closes), takes her doses there, sits in the lounge chair, naps, has
visitors on set weekdays and goes to bed (``bed_in``), getting up in the night now and then for
the bathroom. Her times wander from day to day by tens of minutes, and weekends start later. A
PIR fires when she enters a room and re-triggers every 30 to 120 s while she moves about; sitting
in her chair she trips it only now and then.

Personas (one a home, drawn from the seed and the home): ``regular``, ``early_riser``,
``night_owl`` (to bed after midnight), ``pet_owner`` (a pet trips the lounge, kitchen and hall
PIRs at random, day and night; it opens no door and lies in no bed, and it goes on doing so after
its owner falls), ``social`` (visitors on set weekdays) and ``hospital_stay`` (an empty house for
days: no event at all, in :attr:`ResidentHistory.away`, which is no anomaly of the resident at
home).

Anomalies (ground truth in :attr:`ResidentHistory.anomalies`), none in the first
:data:`LEARNING_DAYS` days, about ``anomaly_rate`` a home-day after them, one at a time:

- ``silent_fall``: everything she does stops at ``start``; nothing of hers until ``end``, the
  day's end (local midnight), when help comes (the front door, the hall, her bed);
- ``illness``: several days of markedly less activity, up late, to bed early, long naps in bed,
  recovering day by day; ``start`` her first ill day's midnight, ``end`` her last one's end;
- ``night_wandering``: out of bed in the small hours, the hall, the front door opened and closed
  (outside a while), back to bed; ``start`` her ``bed_out``, ``end`` her ``bed_in``;
- ``missed_meal``: no kitchen at all from 45 minutes before a meal's usual time to two hours
  after it; ``start`` the usual time, ``end`` two hours after;
- ``not_up``: her ``bed_out`` hours after her usual time; ``start`` her usual time, ``end`` the
  ``bed_out``;
- ``long_bathroom``: an hour or two in the bathroom, where she usually spends minutes;
  ``start`` and ``end`` the stay.

Times of day are local to the home's zone (:data:`ZONE`) by the wall clock, the day the clocks
change too; the days are its calendar days.

With ``routine_change`` (off by default) her week changes from a day drawn apart from the rest
of the seed (her days before it are those without it, in :attr:`ResidentHistory.changed_at`):
a weekday at a day centre (out from about 09:45 to 15:30, lunch there) and a new weekly visitor.

:func:`device_messages` turns a home's events into what its devices publish on MQTT
(``ck/{agency}/dev/{device}/evt``, ``DeviceEventPayload``), for a live simulator to send.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

ZONE = "Europe/London"
_ZONE = ZoneInfo(ZONE)
LEARNING_DAYS = 14
"""The first days of a home carry no anomaly: the routine models learn from them."""

H = 3600.0
M = 60.0

ROOMS = ("bedroom", "bathroom", "kitchen", "lounge", "hall")
PIR = {room: f"pir-{room}" for room in ROOMS}
FRONT_DOOR = "door-front"
FRIDGE = "door-fridge"
BED = "bed"
CHAIR = "chair"
DEVICES: dict[str, str] = {
    **{device: "motion_sensor" for device in PIR.values()},
    FRONT_DOOR: "door_sensor",
    FRIDGE: "door_sensor",
    BED: "bed_sensor",
    CHAIR: "chair_sensor",
}
"""A simulated home's devices and their kinds (``devices.kinds.KINDS``)."""

EventKind = Literal[
    "motion", "door_open", "door_closed", "bed_in", "bed_out", "chair_in", "chair_out"
]
AnomalyKind = Literal[
    "silent_fall", "illness", "night_wandering", "missed_meal", "not_up", "long_bathroom"
]
ANOMALY_KINDS: tuple[AnomalyKind, ...] = (
    "silent_fall",
    "illness",
    "night_wandering",
    "missed_meal",
    "not_up",
    "long_bathroom",
)
PERSONAS = ("regular", "early_riser", "night_owl", "pet_owner", "social", "hospital_stay")
_PERSONA_WEIGHTS = (3, 2, 2, 2, 2, 1)


@dataclass(frozen=True, slots=True)
class SensorEvent:
    ts: float
    """Epoch seconds."""
    device: str
    """The home's device: ``pir-kitchen``, ``door-front``, ``door-fridge``, ``bed``, ``chair``."""
    kind: str
    """``motion``, ``door_open``, ``door_closed``, ``bed_in``, ``bed_out``, ``chair_in``,
    ``chair_out``."""
    room: str
    """``bedroom``, ``bathroom``, ``kitchen``, ``lounge``, ``hall``."""


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: AnomalyKind
    start: float
    """Ground truth: when it began (epoch s)."""
    end: float
    """When it ended (a silent fall: when help comes, the day's end)."""


@dataclass(frozen=True, slots=True)
class ResidentHistory:
    home: int
    persona: str
    zone: str
    events: list[SensorEvent]
    """In time order."""
    anomalies: list[Anomaly]
    """Ground truth, in time order."""
    away: list[tuple[float, float]] = field(default_factory=list)
    """When the house stood empty (a hospital stay): from the front door closing behind her to
    its opening on her return. No event at all, and no anomaly of hers: an evaluation leaves
    these days out or counts them apart."""
    midnights: list[float] = field(default_factory=list)
    """Each simulated day's local midnight, and the end of the last day: ``days + 1`` values."""
    changed_at: float | None = None
    """The local midnight from which her week changed (``routine_change``), or None."""


@dataclass(frozen=True, slots=True)
class _Routine:
    """A resident's usual times, in hours after local midnight, on a weekday."""

    wake: float
    bed: float
    lunch: float
    dinner: float
    nap: float  # the chance of an afternoon nap
    weekend_shift: float  # how much later a weekend starts, hours
    visit_days: frozenset[int]  # weekdays (Monday 0) with a visitor in the afternoon
    outing_day: int | None  # a weekday morning out (shopping), or None
    night_trips: float  # bathroom trips a night, on average
    pet: bool
    centre_day: int | None = None  # a weekday at a day centre (lunch there), or None

    def wake_on(self, weekday: int) -> float:
        return self.wake + (self.weekend_shift if weekday >= 5 else 0.0)

    def meal_on(self, meal: str, weekday: int) -> float:
        shift = self.weekend_shift * 0.6 if weekday >= 5 else 0.0
        if meal == "breakfast":
            return self.wake_on(weekday) + 0.45
        return (self.lunch if meal == "lunch" else self.dinner) + shift


_PERSONA_TIMES = {
    # wake, bed, lunch, dinner
    "early_riser": (6.0, 21.25, 12.0, 17.25),
    "night_owl": (9.5, 24.6, 13.5, 19.5),
}


def _routine(persona: str, rng: random.Random) -> _Routine:
    wake, bed, lunch, dinner = _PERSONA_TIMES.get(persona, (7.5, 22.5, 12.5, 18.0))
    jitter = rng.gauss(0.0, 0.3)  # her own clock, against her persona's
    visits: set[int] = set()
    if persona == "social":
        visits = set(rng.sample(range(7), rng.randint(2, 3)))
    elif rng.random() < 0.5:
        visits = {rng.randrange(7)}  # family once a week
    return _Routine(
        wake=wake + jitter,
        bed=bed + jitter + rng.gauss(0.0, 0.2),
        lunch=lunch + rng.gauss(0.0, 0.2),
        dinner=dinner + rng.gauss(0.0, 0.2),
        nap=rng.uniform(0.2, 0.7),
        weekend_shift=rng.uniform(0.3, 0.8),
        visit_days=frozenset(visits),
        outing_day=rng.randrange(5) if rng.random() < 0.5 else None,
        night_trips=rng.uniform(0.3, 1.5),
        pet=persona == "pet_owner",
    )


@dataclass(slots=True)
class _Day:
    """What one day holds beyond her routine: set by the anomalies and the hospital stay."""

    illness: float = 0.0  # 0 well, up to ~0.7 very ill
    fall_at: float | None = None  # hours after midnight
    skip_meal: str | None = None
    late_wake: float = 0.0  # hours
    long_bathroom_at: float | None = None  # hours
    long_bathroom_h: float = 0.0
    wander_at: float | None = None  # hours after midnight, in the night after this day
    away: bool = False  # the whole day in hospital
    leaves_at: float | None = None  # hours: taken to hospital
    returns_at: float | None = None  # hours: home again
    truth_start: float | None = None  # epoch s, as she lived it
    truth_end: float | None = None


class _Writer:
    """Collects one home's events as plain tuples (cheaper than dataclasses until the end)."""

    __slots__ = ("ev", "pace", "rng")

    def __init__(self, rng: random.Random) -> None:
        self.ev: list[tuple[float, str, str, str]] = []
        self.rng = rng
        self.pace = 1.0  # PIR gaps stretched when she moves slowly

    def put(self, ts: float, device: str, kind: str, room: str) -> None:
        self.ev.append((ts, device, kind, room))

    def moving(self, room: str, t0: float, t1: float) -> None:
        """Moving about ``room`` from ``t0`` to ``t1``: its PIR at once, then every 30-120 s."""
        rng = self.rng
        device = PIR[room]
        t = t0 + rng.uniform(1.0, 6.0)
        while t < t1:
            self.ev.append((t, device, "motion", room))
            t += rng.uniform(30.0, 120.0) * self.pace

    def sitting(self, t0: float, t1: float) -> None:
        """In the lounge chair: the chair's pad, and the PIR only now and then."""
        rng = self.rng
        self.moving("lounge", t0, min(t1, t0 + 40.0))
        t = t0 + rng.uniform(15.0, 45.0)
        if t >= t1 - 20.0:
            return
        self.put(t, CHAIR, "chair_in", "lounge")
        end = t1 - rng.uniform(5.0, 15.0)
        t += rng.expovariate(1 / (12 * M)) * self.pace
        while t < end:
            self.put(t, PIR["lounge"], "motion", "lounge")
            t += rng.expovariate(1 / (12 * M)) * self.pace
        self.put(end, CHAIR, "chair_out", "lounge")

    def door(self, device: str, room: str, t: float, open_s: float) -> None:
        self.put(t, device, "door_open", room)
        self.put(t + open_s, device, "door_closed", room)


def simulate_home(
    home: int,
    days: int,
    seed: int,
    start: float,
    *,
    anomaly_rate: float = 0.05,
    routine_change: bool = False,
) -> ResidentHistory:
    """``days`` days of one home from ``start`` (a local midnight), its persona and its anomalies
    drawn from ``seed`` and ``home``; the same arguments give the same history. With
    ``routine_change`` her week changes from a day drawn from the seed on (:func:`_changed`),
    in :attr:`ResidentHistory.changed_at`; before it, her days are those without it."""
    rng = random.Random(f"residents:{seed}:{home}")
    persona = rng.choices(PERSONAS, _PERSONA_WEIGHTS)[0]
    routine = _routine(persona, rng)
    midnights, weekdays = _calendar(start, days)
    plan = [_Day() for _ in range(days)]
    away = _hospital(persona, days, rng, plan)
    truth = _anomalies(days, anomaly_rate, rng, routine, weekdays, plan)

    changed, after = _changed(routine, days, seed, home) if routine_change else (days, routine)
    w = _Writer(rng)
    for d in range(days):
        _live_day(w, routine if d < changed else after, plan, d, weekdays, midnights)

    end = midnights[-1]
    events = sorted(w.ev, key=lambda e: e[0])
    anomalies: list[Anomaly] = []
    for kind, d, t0, t1 in truth:
        m = midnights[d]
        if kind == "silent_fall":
            fell = _falls_at(events, _wall(m, t0), rng)
            anomalies.append(Anomaly(kind, fell, midnights[d + 1]))
            # nothing of hers from her fall until help comes
            events = [e for e in events if not fell <= e[0] < midnights[d + 1]]
        elif kind == "illness":
            anomalies.append(Anomaly(kind, m, midnights[d + int(t1)]))
        else:
            p = plan[d]
            start_ = p.truth_start if p.truth_start is not None else _wall(m, t0)
            end_ = p.truth_end if p.truth_end is not None else _wall(m, t1)
            anomalies.append(Anomaly(kind, start_, end_))
    if routine.pet:
        events += _pet(rng, midnights[0], end, away)
    events = [e for e in events if midnights[0] <= e[0] < end]
    events.sort(key=lambda e: e[0])
    return ResidentHistory(
        home=home,
        persona=persona,
        zone=ZONE,
        events=[SensorEvent(ts, dev, kind, room) for ts, dev, kind, room in events],
        anomalies=sorted(anomalies, key=lambda a: a.start),
        away=[
            (plan[d].truth_start or _wall(midnights[d], t0), _wall(midnights[r], t1))
            for d, t0, r, t1 in away
        ],
        midnights=midnights,
        changed_at=midnights[changed] if changed < days else None,
    )


def _wall(midnight: float, hours: float) -> float:
    """``hours`` after a local midnight by the wall clock: 12:30 is 12:30 on the day the clocks
    change too (the day is 23 or 25 hours long)."""
    at = datetime.fromtimestamp(midnight, _ZONE) + timedelta(hours=hours)
    return at.timestamp()


def _changed(r: _Routine, days: int, seed: int, home: int) -> tuple[int, _Routine]:
    """Her week as it changes (its own draw, so that her days before it are those without
    it): from a day between three weeks after the learning and two weeks before the end, a
    weekday at a day centre (out from about 09:45 to 15:30, lunch there) and a new weekly
    visitor, each on a weekday she had nothing set."""
    rng = random.Random(f"residents:{seed}:{home}:change")
    lo, hi = LEARNING_DAYS + 21, days - 14
    day = rng.randint(lo, hi) if hi >= lo else max(LEARNING_DAYS, days // 2)
    free = [wd for wd in range(5) if wd != r.outing_day and wd not in r.visit_days]
    centre = rng.choice(free) if free else rng.randrange(5)
    rest = [wd for wd in range(7) if wd != centre and wd not in r.visit_days]
    visits = r.visit_days | ({rng.choice(rest)} if rest else set())
    return day, replace(r, centre_day=centre, visit_days=frozenset(visits))


def _falls_at(events: list[tuple[float, str, str, str]], after: float, rng: random.Random) -> float:
    """The moment she falls: walking about, seconds after the first PIR that sees her from
    ``after`` on (before it would fire again)."""
    i = bisect_left(events, after, key=lambda e: e[0])
    while i < len(events) and events[i][2] != "motion":
        i += 1
    return (events[i][0] if i < len(events) else after) + rng.uniform(5.0, 25.0)


def _calendar(start: float, days: int) -> tuple[list[float], list[int]]:
    zone = ZoneInfo(ZONE)
    first = datetime.fromtimestamp(start, zone).date()
    midnights = [start]
    for i in range(1, days + 1):
        midnights.append(datetime.combine(first + timedelta(days=i), time(), zone).timestamp())
    weekdays = [(first + timedelta(days=i)).weekday() for i in range(days)]
    return midnights, weekdays


def _hospital(
    persona: str, days: int, rng: random.Random, plan: list[_Day]
) -> list[tuple[int, float, int, float]]:
    """A hospital stay's days: (day she leaves, hour, day she returns, hour)."""
    if persona != "hospital_stay" or days < 8:
        return []
    length = rng.randint(3, min(10, days - 5))
    leave = rng.randint(min(LEARNING_DAYS // 2, days - length - 3), days - length - 2)
    back = leave + length
    plan[leave].leaves_at = rng.uniform(10.0, 16.0)
    plan[back].returns_at = rng.uniform(11.0, 17.0)
    for d in range(leave + 1, back):
        plan[d].away = True
    return [(leave, plan[leave].leaves_at or 0.0, back, plan[back].returns_at or 0.0)]


def _quiet_days(plan: list[_Day]) -> list[bool]:
    """The days no anomaly may fall on: a hospital stay's, and the day before and after it."""
    busy = [p.away or p.leaves_at is not None or p.returns_at is not None for p in plan]
    edges = [i for i, b in enumerate(busy) if b]
    for i in edges:
        for j in (i - 1, i + 1):
            if 0 <= j < len(busy):
                busy[j] = True
    return busy


def _anomalies(
    days: int,
    rate: float,
    rng: random.Random,
    routine: _Routine,
    weekdays: list[int],
    plan: list[_Day],
) -> list[tuple[AnomalyKind, int, float, float]]:
    """Each anomaly as (kind, day, start hour, end hour) (an illness: its length in days as the
    end); ``plan`` marked with what each day holds."""
    out: list[tuple[AnomalyKind, int, float, float]] = []
    busy = _quiet_days(plan)
    d = LEARNING_DAYS
    while d < days:
        if busy[d] or rng.random() >= rate:
            d += 1
            continue
        kind = rng.choice(ANOMALY_KINDS)
        placed = _place(kind, d, days, rng, routine, weekdays, plan, busy)
        if placed is None:
            d += 1
            continue
        out.append(placed)
        d += (int(placed[3]) if kind == "illness" else 1) + 1  # a quiet day between two
    return out


def _place(  # noqa: PLR0911
    kind: AnomalyKind,
    d: int,
    days: int,
    rng: random.Random,
    routine: _Routine,
    weekdays: list[int],
    plan: list[_Day],
    busy: list[bool],
) -> tuple[AnomalyKind, int, float, float] | None:
    """One anomaly of ``kind`` on day ``d``, marked in ``plan``, or None when it does not fit."""
    p = plan[d]
    wake = routine.wake_on(weekdays[d])
    if kind == "illness":
        length = rng.randint(3, 6)
        if d + length > days or any(busy[d : d + length]):
            return None
        for i in range(length):  # worst at first, better day by day
            plan[d + i].illness = rng.uniform(0.55, 0.7) * (1 - i / length)
        return (kind, d, 0.0, float(length))
    if kind == "silent_fall":
        last = min(routine.bed, 24.0) - 3.0
        p.fall_at = rng.uniform(wake + 0.75, max(wake + 1.0, last))
        return (kind, d, p.fall_at, 24.0)
    if kind == "night_wandering":
        if d + 1 >= days or busy[d + 1]:
            return None
        lo = max(routine.bed + 1.0, 25.0)
        hi = min(routine.wake_on(weekdays[d + 1]) + 24.0 - 1.5, 28.5)
        p.wander_at = rng.uniform(lo, max(lo, hi))
        return (kind, d, p.wander_at, p.wander_at)  # its times set as she lives it
    if kind == "missed_meal":
        p.skip_meal = rng.choice(("breakfast", "lunch", "dinner"))
        usual = routine.meal_on(p.skip_meal, weekdays[d])
        return (kind, d, usual, usual + 2.0)
    if kind == "not_up":
        p.late_wake = rng.uniform(2.5, 4.0)
        return (kind, d, wake, wake)  # the end: her bed_out, as she lives it
    p.long_bathroom_at = rng.uniform(wake + 2.0, routine.dinner - 1.0)
    p.long_bathroom_h = rng.uniform(1.0, 2.0)
    return (kind, d, p.long_bathroom_at, p.long_bathroom_at)


def _live_day(
    w: _Writer,
    r: _Routine,
    plan: list[_Day],
    d: int,
    weekdays: list[int],
    midnights: list[float],
) -> None:
    """Day ``d`` of her life, from her waking to her waking the next day, into ``w``."""
    p = plan[d]
    if p.away:
        return
    day = _Today(w, r, p, midnights[d], weekdays[d])
    t = day.get_up()
    for when, what in day.anchors():
        if when > t:
            t = _fill(w, t, when, day.kitchen_ok, day.ill)
        if what == "leave":
            w.moving("hall", t, t + 120.0)
            open_s = w.rng.uniform(20.0, 60.0)
            w.door(FRONT_DOOR, "hall", t + 150.0, open_s)
            p.truth_start = t + 150.0 + open_s  # the house empty from here until she returns
            return
        t = getattr(day, what)(t)
    if p.fall_at is not None:
        _help_comes(w, midnights[d + 1])
        return
    _night(w, r, p, d, t, weekdays, midnights)


def _help_comes(w: _Writer, at: float) -> None:
    """After a silent fall: someone comes in at the day's end and puts her to bed."""
    rng = w.rng
    h = at + rng.uniform(5, 20) * M
    w.door(FRONT_DOOR, "hall", h, rng.uniform(10.0, 30.0))
    w.moving("hall", h, h + 60.0)
    w.moving("lounge", h + 60.0, h + 20 * M)
    w.moving("bedroom", h + 20 * M, h + 30 * M)
    w.put(h + 30 * M, BED, "bed_in", "bedroom")
    w.door(FRONT_DOOR, "hall", h + 35 * M, rng.uniform(10.0, 30.0))


class _Today:
    """One day of her routine: its fixed points (meals, a visit, a nap, bed) and what she does
    at each, each returning when she is done."""

    def __init__(self, w: _Writer, r: _Routine, p: _Day, midnight: float, weekday: int) -> None:
        rng = w.rng
        self.w, self.r, self.p, self.m, self.wd = w, r, p, midnight, weekday
        self.ill = ill = p.illness
        w.pace = 1.0 / (1.0 - 0.7 * ill)
        self.wake = r.wake_on(weekday) + rng.gauss(0.0, 0.33) + ill * 3.0
        if p.late_wake:
            self.wake = r.wake_on(weekday) + p.late_wake
        self.bed = r.bed + (0.3 if weekday >= 4 else 0.0) + rng.gauss(0.0, 0.33) - ill * 1.5
        self.skip: tuple[float, float] | None = None
        if p.skip_meal is not None:
            usual = r.meal_on(p.skip_meal, weekday)
            self.skip = (self.at(usual - 0.75), self.at(usual + 2.0))

    def at(self, hours: float) -> float:
        return _wall(self.m, hours)

    def kitchen_ok(self, t0: float, t1: float) -> bool:
        return self.skip is None or t1 <= self.skip[0] or t0 >= self.skip[1]

    def get_up(self) -> float:
        w, p, rng = self.w, self.p, self.w.rng
        if p.returns_at is not None:  # home from hospital
            t = self.at(p.returns_at)
            w.door(FRONT_DOOR, "hall", t, rng.uniform(10.0, 40.0))
            w.moving("hall", t, t + 90.0)
            return t + 120.0
        t = self.at(self.wake)
        w.put(t, BED, "bed_out", "bedroom")
        if p.late_wake:
            p.truth_end = t
        t = _stay(w, "bedroom", t, rng.uniform(3, 10) * M)
        return _stay(w, "bathroom", t, rng.uniform(8, 20) * M)

    def anchors(self) -> list[tuple[float, str]]:
        r, p, wd, ill, rng = self.r, self.p, self.wd, self.ill, self.w.rng
        out: list[tuple[float, str]] = []
        for meal in ("breakfast", "lunch", "dinner"):
            h = r.meal_on(meal, wd) + rng.gauss(0.0, 0.25)
            if meal == "breakfast":
                h = max(h + ill * 1.5, self.wake + 0.3)
            out.append((self.at(h), meal))
        if wd == r.outing_day and ill < 0.2:
            out.append((self.at(r.wake_on(wd) + 2.5 + rng.gauss(0.0, 0.3)), "outing"))
        if wd == r.centre_day and ill < 0.2:
            out.append((self.at(9.75 + rng.gauss(0.0, 0.2)), "day_centre"))
            out = [(t, what) for t, what in out if what != "lunch"]  # lunch at the centre
        if wd in r.visit_days:
            out.append((self.at(15.0 + rng.gauss(0.0, 0.5)), "visit"))
        if rng.random() < r.nap + ill:
            out.append((self.at(r.lunch + 1.0 + rng.uniform(0.0, 0.5)), "nap"))
        if p.long_bathroom_at is not None:
            out.append((self.at(p.long_bathroom_at), "long_bathroom"))
        if p.leaves_at is not None:
            out.append((self.at(p.leaves_at), "leave"))
        out.append((self.at(self.bed) - rng.uniform(15, 30) * M, "bedtime"))
        return sorted(out)

    def _meal(self, t: float, minutes: tuple[float, float]) -> float:
        w, rng = self.w, self.w.rng
        span = rng.uniform(*minutes) * M * (1.0 - 0.5 * self.ill)
        if not self.kitchen_ok(t, t + span):
            return t
        w.moving("kitchen", t, t + span)
        for _ in range(rng.randint(1, 3)):
            w.door(FRIDGE, "kitchen", t + rng.uniform(0.1, 0.8) * span, rng.uniform(8, 60))
        return t + span  # her doses are taken at the kitchen table, with the meal

    def breakfast(self, t: float) -> float:
        return self._meal(t, (15, 30))

    def lunch(self, t: float) -> float:
        return self._meal(t, (20, 40))

    def dinner(self, t: float) -> float:
        return self._meal(t, (30, 45))

    def outing(self, t: float) -> float:
        w, rng = self.w, self.w.rng
        w.moving("hall", t, t + 60.0)
        w.door(FRONT_DOOR, "hall", t + 70.0, rng.uniform(5.0, 20.0))
        t += rng.uniform(1.0, 2.5) * H
        w.door(FRONT_DOOR, "hall", t, rng.uniform(5.0, 20.0))
        w.moving("hall", t, t + 90.0)
        return t + 100.0

    def day_centre(self, t: float) -> float:
        """Fetched by the day centre's bus at about 09:45, home about 15:30, lunch there."""
        w, rng = self.w, self.w.rng
        w.moving("hall", t, t + 60.0)
        w.door(FRONT_DOOR, "hall", t + 70.0, rng.uniform(5.0, 20.0))
        t = self.at(15.5 + rng.gauss(0.0, 0.25))
        w.door(FRONT_DOOR, "hall", t, rng.uniform(5.0, 20.0))
        w.moving("hall", t, t + 90.0)
        return t + 100.0

    def visit(self, t: float) -> float:
        w, rng = self.w, self.w.rng
        w.door(FRONT_DOOR, "hall", t, rng.uniform(20.0, 60.0))
        w.moving("hall", t, t + 60.0)
        span = rng.uniform(0.5, 1.5) * H
        w.moving("lounge", t + 60.0, t + span)  # two people moving: a busy PIR
        tea = t + 0.3 * span
        if rng.random() < 0.6 and self.kitchen_ok(tea, tea + 8 * M):
            w.moving("kitchen", tea, tea + 8 * M)
            w.door(FRIDGE, "kitchen", tea + 60.0, rng.uniform(8.0, 30.0))
        t += span
        w.moving("hall", t, t + 60.0)
        w.door(FRONT_DOOR, "hall", t + 60.0, rng.uniform(20.0, 60.0))
        return t + 120.0

    def nap(self, t: float) -> float:
        w, rng = self.w, self.w.rng
        span = rng.uniform(0.5, 1.5) * H * (1.0 + 2.0 * self.ill)
        if self.ill > 0.2 or rng.random() < 0.3:  # in bed
            w.moving("bedroom", t, t + 60.0)
            w.put(t + 90.0, BED, "bed_in", "bedroom")
            w.put(t + span, BED, "bed_out", "bedroom")
            w.moving("bedroom", t + span, t + span + 60.0)
        else:  # in the chair, still
            w.put(t + 20.0, CHAIR, "chair_in", "lounge")
            w.put(t + span, CHAIR, "chair_out", "lounge")
        return t + span + 90.0

    def long_bathroom(self, t: float) -> float:
        w, rng, p = self.w, self.w.rng, self.p
        end = t + p.long_bathroom_h * H
        p.truth_start, p.truth_end = t, end
        w.moving("bathroom", t, t + 60.0)
        s = t + 60.0
        while s < end:
            w.put(s, PIR["bathroom"], "motion", "bathroom")
            s += rng.uniform(4, 15) * M
        w.put(end - rng.uniform(10.0, 40.0), PIR["bathroom"], "motion", "bathroom")  # up, out
        return end

    def bedtime(self, t: float) -> float:
        w, rng = self.w, self.w.rng
        t = _stay(w, "bathroom", t, rng.uniform(5, 15) * M)
        t = _stay(w, "bedroom", t, rng.uniform(3, 8) * M)
        t = max(t, self.at(self.bed))
        w.put(t, BED, "bed_in", "bedroom")
        return t


def _night(
    w: _Writer,
    r: _Routine,
    p: _Day,
    d: int,
    t: float,
    weekdays: list[int],
    midnights: list[float],
) -> None:
    """The night after day ``d``, from her going to bed at ``t``: a trip or two to the bathroom,
    and, on a wandering night, the front door."""
    rng = w.rng
    m = midnights[d]
    woke = _wall(m, r.wake_on(weekdays[d + 1]) + 24.0 if d + 1 < len(weekdays) else 31.0)
    first, last = t + 1.0 * H, woke - 1.0 * H
    trips = sorted(
        rng.uniform(first, last) for _ in range(_poisson(rng, r.night_trips)) if last > first
    )
    wander = None if p.wander_at is None else max(_wall(m, p.wander_at), t + 0.5 * H)
    done = t
    for s in trips:
        if s < done + 0.5 * H or (wander is not None and abs(s - wander) < H):
            continue  # back in bed a while before the next, and none about her wandering
        w.put(s, BED, "bed_out", "bedroom")
        e = _stay(w, "bedroom", s, rng.uniform(0.5, 1.5) * M)
        e = _stay(w, "bathroom", e, rng.uniform(3, 8) * M)
        e = _stay(w, "bedroom", e, rng.uniform(0.5, 1.5) * M)
        w.put(e, BED, "bed_in", "bedroom")
        done = e
    if wander is not None:
        s = wander
        p.truth_start = s
        w.put(s, BED, "bed_out", "bedroom")
        e = _stay(w, "bedroom", s, rng.uniform(1, 3) * M)
        e = _stay(w, "hall", e, rng.uniform(5, 20) * M)
        w.door(FRONT_DOOR, "hall", e, rng.uniform(10.0, 40.0))
        e += rng.uniform(5, 30) * M  # outside in the night
        w.door(FRONT_DOOR, "hall", e, rng.uniform(10.0, 40.0))
        e = _stay(w, "hall", e + 45.0, rng.uniform(2, 10) * M)
        e = _stay(w, "bedroom", e, rng.uniform(1, 3) * M)
        w.put(e, BED, "bed_in", "bedroom")
        p.truth_end = e


def _stay(w: _Writer, room: str, t: float, span: float) -> float:
    if w.rng.random() < 0.5 and room not in ("hall",):
        w.put(t + 2.0, PIR["hall"], "motion", "hall")  # through the hall
        t += 8.0
    w.moving(room, t, t + span)
    return t + span


def _fill(
    w: _Writer, t: float, until: float, kitchen_ok: Callable[[float, float], bool], ill: float
) -> float:
    """Her time between two fixed points: the lounge chair, broken by short trips."""
    rng = w.rng
    while until - t > 4 * M:
        sit = min(rng.uniform(30, 90) * M * (1.0 + 2.0 * ill), until - t)
        if sit > 4 * M:
            w.sitting(t, t + sit)
            t += sit
        if until - t < 12 * M:
            break
        room = rng.choices(("bathroom", "kitchen", "bedroom", "hall"), (4, 4, 2, 1))[0]
        span = rng.uniform(*{"bathroom": (3, 8), "kitchen": (4, 12)}.get(room, (1, 4))) * M
        if room == "kitchen" and not kitchen_ok(t, t + span + 10.0):
            room = "bathroom"
        t = _stay(w, room, t, span)
        if room == "kitchen" and rng.random() < 0.5:
            w.door(FRIDGE, "kitchen", t - span / 2, rng.uniform(5.0, 30.0))
    return max(t, until)


def _pet(
    rng: random.Random, start: float, end: float, away: list[tuple[int, float, int, float]]
) -> list[tuple[float, str, str, str]]:
    """A cat or a dog: the lounge, kitchen and hall PIRs at random, a few an hour."""
    out: list[tuple[float, str, str, str]] = []
    t = start + rng.expovariate(1 / (40 * M))
    while t < end:
        room = rng.choices(("lounge", "kitchen", "hall"), (5, 3, 2))[0]
        for _ in range(rng.choices((1, 2, 3), (6, 3, 1))[0]):
            out.append((t, PIR[room], "motion", room))
            t += rng.uniform(30.0, 90.0)
        t += rng.expovariate(1 / (40 * M))
    return out


def _poisson(rng: random.Random, mean: float) -> int:
    n, p, limit = 0, 1.0, math.exp(-mean)
    while True:
        p *= rng.random()
        if p < limit:
            return n
        n += 1


# ---------------------------------------------------------------- on MQTT


@dataclass(frozen=True, slots=True)
class DeviceMessage:
    """One event as its device publishes it: the topic and the JSON body
    (``kernel.contracts.DeviceEventPayload``)."""

    topic: str
    device_id: str
    body: dict[str, Any]


def home_devices(prefix: str) -> dict[str, str]:
    """A simulated home's devices as the registry knows them: id (``{prefix}-pir-kitchen``) to
    kind (``devices.kinds``)."""
    return {f"{prefix}-{device}": kind for device, kind in DEVICES.items()}


def device_messages(history: ResidentHistory, agency: str, prefix: str) -> list[DeviceMessage]:
    """What a home's devices publish for its events, in time order: each device its own ``seq``
    from 0, the room in ``data``. ``prefix`` names the home's devices (its patient's id)."""
    seqs: dict[str, int] = {}
    out: list[DeviceMessage] = []
    for e in history.events:
        device_id = f"{prefix}-{e.device}"
        seq = seqs.get(device_id, 0)
        seqs[device_id] = seq + 1
        body = {"type": e.kind, "ts": round(e.ts, 3), "seq": seq, "data": {"room": e.room}}
        out.append(DeviceMessage(f"ck/{agency}/dev/{device_id}/evt", device_id, body))
    return out
