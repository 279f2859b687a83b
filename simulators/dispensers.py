"""The simulated homes' medication dispensers: each home's schedule, and when (if ever) each
dose is taken, the same for the same seed.

Adherence varies as it does in life: most doses are taken within a few minutes of their time,
some late in their window, some missed (the dispenser then says nothing: silence is the signal).
A home's doses are spread over the day so that, at any hour of a demonstration, doses fall due.

Dispensers misbehave now and then: one jams before a dose comes out, a resident tries for a
second dose soon after taking one; each says how many doses it still holds with every dose
taken. The pharmacy refills each home once a week (its day its own) with a week's doses and a
few to spare, so some homes run low, 72 hours ahead by their schedules, before their refill.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from medication.doses import HERO_WINDOW_S, Dose, Schedule, ScheduledDose, doses_between

MEDICINES = (
    ("bisoprolol", True),
    ("apixaban", True),
    ("metformin", False),
    ("atorvastatin", False),
    ("donepezil", False),
    ("levothyroxine", False),
)


@dataclass(frozen=True, slots=True)
class Adherence:
    on_time: float = 0.85
    late: float = 0.10
    """The rest are missed."""
    jam: float = 0.02
    """Of doses taken, the dispenser jams first (a minute before it comes out)."""
    double: float = 0.02
    """Of doses taken, a second attempt follows within minutes."""


REFILL_EVERY_DAYS = 7
REFILL_AT = time(10, 0)
SPARE_DAYS = 4
"""A refill holds a week's doses and up to this many days' more."""


@dataclass(frozen=True, slots=True)
class Said:
    """What a dispenser says: when, in which home, the event's type and its data."""

    at: float
    patient_id: str
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


def dispenser_id(patient_id: str) -> str:
    return f"{patient_id}-disp"


def schedule_for(patient_id: str, seed: int) -> Schedule:
    """Two or three doses a day at times spread over the day, one of them critical at times."""
    rng = random.Random(f"{seed}:doses:{patient_id}")
    first = rng.randrange(0, 8 * 60)
    count = rng.choice((2, 3))
    doses = []
    for n, (name, critical) in enumerate(rng.sample(MEDICINES, count)):
        minute = (first + n * (24 * 60 // count) + rng.randrange(0, 30)) % (24 * 60)
        doses.append(
            ScheduledDose(name, time(minute // 60, minute % 60), HERO_WINDOW_S * 2, critical)
        )
    return Schedule(patient_id, tuple(sorted(doses, key=lambda d: d.at)), zone="Europe/London")


def taken_at(dose: Dose, seed: int, adherence: Adherence = Adherence()) -> float | None:
    """When the resident takes this dose (None: never), the same for the same seed."""
    rng = random.Random(f"{seed}:taken:{dose.patient_id}:{dose.key}")
    draw = rng.random()
    if draw < adherence.on_time:
        return dose.due_at + rng.uniform(-60.0, dose.on_time_s)
    if draw < adherence.on_time + adherence.late:
        return dose.due_at + rng.uniform(dose.on_time_s, dose.window_s * 0.9)
    return None


class Dispensers:
    """Every home's dispenser: the doses taken between two moments, in time order."""

    def __init__(self, patient_ids: list[str], seed: int) -> None:
        self.seed = seed
        self.schedules = {p: schedule_for(p, seed) for p in patient_ids}

    def taken_between(self, start: float, end: float) -> list[tuple[float, Dose]]:
        out = []
        for schedule in self.schedules.values():
            span = max(d.window_s for d in schedule.doses) + 60.0
            for dose in doses_between(schedule, start - span, end):
                at = taken_at(dose, self.seed)
                if at is not None and start <= at < end:
                    out.append((at, dose))
        return sorted(out, key=lambda t: (t[0], t[1].patient_id))

    def said_between(self, start: float, end: float) -> list[Said]:
        """Everything the dispensers say in [``start``, ``end``), in time order: doses taken
        (with the doses left), jams, second attempts and the weekly refills."""
        out = []
        for schedule in self.schedules.values():
            span = max(d.window_s for d in schedule.doses) + 60.0
            for dose in doses_between(schedule, start - span, end):
                out += [x for x in said_of(dose, schedule, self.seed) if start <= x.at < end]
            out += refills_between(schedule, self.seed, start, end)
        return sorted(out, key=lambda x: (x.at, x.patient_id, x.kind))


def said_of(
    dose: Dose, schedule: Schedule, seed: int, adherence: Adherence = Adherence()
) -> list[Said]:
    """What the dispenser says of one dose: nothing when it is not taken; else maybe a jam
    first, its ``dose_taken`` with the doses left, and maybe a second attempt after it."""
    at = taken_at(dose, seed, adherence)
    if at is None:
        return []
    rng = random.Random(f"{seed}:said:{dose.patient_id}:{dose.key}")
    left = len(doses_between(schedule, dose.due_at + 1.0, next_refill(schedule, seed, at)))
    taken = {"dose": dose.name, "doses_left": left + spare_of(schedule, seed)}
    out = [Said(at, dose.patient_id, "dose_taken", taken)]
    if rng.random() < adherence.jam:
        out.insert(0, Said(at - 60.0, dose.patient_id, "dispenser_jam"))
    if rng.random() < adherence.double:
        again = min(at + rng.uniform(60.0, 300.0), dose.closes_at - 1.0)
        out.append(Said(again, dose.patient_id, "dose_double_attempt", {"dose": dose.name}))
    return out


def spare_of(schedule: Schedule, seed: int) -> int:
    """Doses a home's refill holds beyond its week."""
    rng = random.Random(f"{seed}:spare:{schedule.patient_id}")
    return rng.randrange(0, SPARE_DAYS * len(schedule.doses) + 1)


def _refill_on(schedule: Schedule, seed: int, day: datetime) -> bool:
    offset = random.Random(f"{seed}:refill:{schedule.patient_id}").randrange(REFILL_EVERY_DAYS)
    return day.toordinal() % REFILL_EVERY_DAYS == offset


def refills_between(schedule: Schedule, seed: int, start: float, end: float) -> list[Said]:
    """The home's refills in [``start``, ``end``), each saying the doses it then holds."""
    zone = ZoneInfo(schedule.zone)
    day = datetime.fromtimestamp(start, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    while day.timestamp() < end:
        at = datetime.combine(day.date(), REFILL_AT, zone).timestamp()
        if start <= at < end and _refill_on(schedule, seed, day):
            held = len(doses_between(schedule, at, next_refill(schedule, seed, at + 1.0)))
            data = {"doses_left": held + spare_of(schedule, seed)}
            out.append(Said(at, schedule.patient_id, "dispenser_refilled", data))
        day = datetime.combine(day.date() + timedelta(days=1), time(0, 0), zone)
    return out


def next_refill(schedule: Schedule, seed: int, after: float) -> float:
    """When the home's dispenser is next refilled after ``after``."""
    zone = ZoneInfo(schedule.zone)
    day = datetime.fromtimestamp(after, zone)
    for _ in range(REFILL_EVERY_DAYS + 1):
        at = datetime.combine(day.date(), REFILL_AT, zone).timestamp()
        if at > after and _refill_on(schedule, seed, day):
            return at
        day = datetime.combine(day.date() + timedelta(days=1), time(0, 0), zone)
    raise AssertionError("a home is refilled every week")
