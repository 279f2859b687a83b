"""The simulated homes' medication dispensers: each home's schedule, and when (if ever) each
dose is taken, the same for the same seed.

Adherence varies as it does in life: most doses are taken within a few minutes of their time,
some late in their window, some missed (the dispenser then says nothing: silence is the signal).
A home's doses are spread over the day so that, at any hour of a demonstration, doses fall due.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import time

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
