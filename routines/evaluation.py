"""How well a model's alarms tell the anomalies that happened: per anomaly kind, recall and
the delay from its start to the first alarm that matched it (median, p90); per alarm kind,
precision; and false alarms per home-day, the figure a monitoring centre pays for.

An alarm is the first of a model's detections with the same home, kind and start estimate
(:func:`alarms`): scoring every 5 minutes repeats a detection until its cause ends, and a person
is told once. An alarm matches an anomaly of the same home when its kind answers that anomaly's
kind (:data:`ANSWERS`) and it was raised within the anomaly's ``[start, end]``. An alarm that
matches no anomaly is a false alarm.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from routines.models import Detection

ANSWERS: Mapping[str, frozenset[str]] = {
    "silent_fall": frozenset({"inactivity", "not_up", "long_bathroom"}),
    "not_up": frozenset({"not_up", "inactivity"}),
    "illness": frozenset({"unusual_day", "inactivity", "not_up", "missed_meal"}),
    "night_wandering": frozenset({"night_wandering", "unusual_day"}),
    "missed_meal": frozenset({"missed_meal", "unusual_day"}),
    "long_bathroom": frozenset({"long_bathroom", "inactivity"}),
}
"""For each anomaly kind, the alarm kinds that tell it (a silent fall in the bathroom is a
long stay there, an illness shows as a late morning or a still afternoon)."""
INACTIVITY = ("silent_fall",)
"""Unusual inactivity: she stopped moving when she is usually up."""


@dataclass(frozen=True, slots=True)
class Truth:
    home: int
    kind: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Alarm:
    home: int
    kind: str
    at: float
    start: float
    explanation: str = ""


def alarms(home: int, raised: Iterable[tuple[float, Detection]]) -> list[Alarm]:
    """A home's detections (each with the moment it was scored) as alarms: the first of each
    kind and start estimate."""
    seen: dict[tuple[str, float], Alarm] = {}
    for at, d in sorted(raised, key=lambda r: r[0]):
        seen.setdefault((d.kind, d.start), Alarm(home, d.kind, at, d.start, d.explanation))
    return sorted(seen.values(), key=lambda a: (a.at, a.kind))


@dataclass(frozen=True, slots=True)
class KindFigures:
    anomalies: int
    detected: int
    recall: float | None
    median_delay_s: float | None
    p90_delay_s: float | None


@dataclass(frozen=True, slots=True)
class AlarmFigures:
    alarms: int
    true: int
    precision: float | None


@dataclass(frozen=True, slots=True)
class Figures:
    by_anomaly: dict[str, KindFigures]
    by_alarm: dict[str, AlarmFigures]
    inactivity: KindFigures
    false_alarms: int
    home_days: float
    false_alarms_per_home_day: float | None


def _matches(a: Alarm, t: Truth) -> bool:
    return a.home == t.home and a.kind in ANSWERS[t.kind] and t.start <= a.at <= t.end


def _kind(truths: Sequence[Truth], delays: Sequence[float | None]) -> KindFigures:
    found = [d for d in delays if d is not None]
    return KindFigures(
        len(truths),
        len(found),
        len(found) / len(truths) if truths else None,
        float(np.percentile(found, 50)) if found else None,
        float(np.percentile(found, 90)) if found else None,
    )


def evaluate(raised: Sequence[Alarm], truths: Sequence[Truth], home_days: float) -> Figures:
    by_home: dict[int, list[Alarm]] = {}
    for a in raised:
        by_home.setdefault(a.home, []).append(a)
    delays: list[float | None] = []
    for t in truths:
        hits = [a.at for a in by_home.get(t.home, []) if _matches(a, t)]
        delays.append(min(hits) - t.start if hits else None)
    kinds = sorted({t.kind for t in truths} | set(ANSWERS))
    by_anomaly = {
        k: _kind(
            [t for t in truths if t.kind == k],
            [d for t, d in zip(truths, delays, strict=True) if t.kind == k],
        )
        for k in kinds
    }
    inactivity = _kind(
        [t for t in truths if t.kind in INACTIVITY],
        [d for t, d in zip(truths, delays, strict=True) if t.kind in INACTIVITY],
    )
    true = [any(_matches(a, t) for t in truths if t.home == a.home) for a in raised]
    by_alarm: dict[str, AlarmFigures] = {}
    for k in sorted({a.kind for a in raised}):
        mine = [ok for a, ok in zip(raised, true, strict=True) if a.kind == k]
        by_alarm[k] = AlarmFigures(len(mine), sum(mine), sum(mine) / len(mine))
    false = true.count(False)
    return Figures(
        by_anomaly,
        by_alarm,
        inactivity,
        false,
        home_days,
        false / home_days if home_days > 0 else None,
    )
