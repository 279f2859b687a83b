"""Drift over days for care review (``routines/drift.py``): her last 7 days against the 21
before them, on hand-made histories."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from routines.drift import drift, per_day
from routines.features import Reading, Timeline

LONDON = ZoneInfo("Europe/London")
FIRST = date(2026, 9, 1)


def at(day: date, hh: float) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=LONDON).timestamp() + hh * 3600


def a_day(
    day: date, rng: np.random.Generator, pace: float = 1.0, lie_in: float = 0.0
) -> list[Reading]:
    """Up about 07:00 (later by ``lie_in`` hours), moving about every ``pace`` x 10 minutes,
    in bed about 22:00; a trip to the bathroom at 03:00."""
    up = 7.0 + lie_in + rng.normal(0, 0.2)
    out = [Reading(at(day, up), "bedroom", "bed_out")]
    rooms = ["kitchen", "lounge", "lounge", "bathroom", "hall"]
    t = up + 0.1
    while t < 21.8:
        out.append(Reading(at(day, t), rooms[int(rng.integers(len(rooms)))], "motion"))
        t += pace * rng.uniform(0.1, 0.25)
    out.append(Reading(at(day, 22.0 + rng.normal(0, 0.2)), "bedroom", "bed_in"))
    out += [
        Reading(at(day, 27.0), "bedroom", "bed_out"),
        Reading(at(day, 27.05), "bathroom", "motion"),
        Reading(at(day, 27.15), "bedroom", "bed_in"),
    ]
    return out


def days(n: int, **unwell: float) -> list[Reading]:
    rng = np.random.default_rng(1)
    return [
        e
        for i in range(n)
        for e in a_day(FIRST + timedelta(days=i), rng, **(unwell if i >= n - 7 else {}))
    ]


UNTIL = at(FIRST + timedelta(days=28), 4)


def test_her_usual_weeks_show_no_drift() -> None:
    tl = Timeline.of(days(28), LONDON)
    d = per_day(tl, UNTIL)
    assert len(d.days) == 28
    assert 8.6 < float(np.median(d.time_in_bed_h)) < 9.2  # 22:00 to 07:00, less the trip
    assert drift(tl, UNTIL) == []


def test_a_week_of_less_activity_and_longer_in_bed_is_told_with_her_own_figures() -> None:
    tl = Timeline.of(days(28, pace=2.0, lie_in=2.5), LONDON)
    found = {f.measure: f for f in drift(tl, UNTIL)}
    assert set(found) == {"activity", "time_in_bed"}
    assert found["activity"].recent < 0.7 * found["activity"].usual
    assert "less than her usual over the last 7 days" in found["activity"].explanation
    assert found["time_in_bed"].explanation.startswith("in bed 2.")


def test_too_few_days_say_nothing_and_the_future_is_not_read() -> None:
    tl = Timeline.of(days(12, pace=2.0), LONDON)
    assert drift(tl, at(FIRST + timedelta(days=12), 4)) == []
    rng = np.random.default_rng(2)
    later = [e for i in range(28, 35) for e in a_day(FIRST + timedelta(days=i), rng, pace=3.0)]
    well = Timeline.of(days(28) + later, LONDON)
    assert drift(well, UNTIL) == drift(Timeline.of(days(28), LONDON), UNTIL)
