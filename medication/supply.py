"""How long a dispenser's doses last, against its schedule: Philips says "almost empty" 72 hours
before the last dose it holds is gone, so that a refill can be arranged in time.

One dose is one compartment: a dispenser that reports ``doses_left`` holds the next
``doses_left`` doses of the schedule. No I/O and no clock.
"""

from __future__ import annotations

from medication.doses import Schedule, doses_between

LOW_SUPPLY_AHEAD_S = 72 * 3600.0
"""Philips: a dispenser is almost empty when what it holds will not last 72 hours."""


def runs_out_at(
    schedule: Schedule, doses_left: int, now: float, ahead_s: float = LOW_SUPPLY_AHEAD_S
) -> float | None:
    """When the first dose the dispenser holds none for is due, if within ``ahead_s`` of
    ``now``; None when what it holds lasts that long (or the schedule has no doses)."""
    coming = doses_between(schedule, now, now + ahead_s)
    if max(doses_left, 0) >= len(coming):
        return None
    return coming[max(doses_left, 0)].due_at


def low_supply(
    schedule: Schedule, doses_left: int, now: float, ahead_s: float = LOW_SUPPLY_AHEAD_S
) -> bool:
    """Whether the dispenser runs out within ``ahead_s``: a (minor) alarm, until refilled."""
    return runs_out_at(schedule, doses_left, now, ahead_s) is not None
