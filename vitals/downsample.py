"""Vitals downsampled to minute aggregates: per patient, measure and minute, the lowest, the
highest, the sum and the count of the values kept (so the mean, and so two aggregates of one
minute merge into the aggregate of both: history written in several batches adds up).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vitals.measures import Measure

MINUTE_S = 60


@dataclass(frozen=True, slots=True)
class MinuteAggregate:
    patient_id: str
    measure: Measure
    minute: int
    """Epoch seconds of the minute's start."""
    low: float
    high: float
    total: float
    count: int

    @property
    def mean(self) -> float:
        return self.total / self.count

    def merged(self, other: MinuteAggregate) -> MinuteAggregate:
        """This minute's aggregate with more values of the same patient, measure and minute."""
        if (self.patient_id, self.measure, self.minute) != (
            other.patient_id,
            other.measure,
            other.minute,
        ):
            raise ValueError("only one patient's measure in one minute merges")
        return MinuteAggregate(
            self.patient_id,
            self.measure,
            self.minute,
            min(self.low, other.low),
            max(self.high, other.high),
            self.total + other.total,
            self.count + other.count,
        )


def minute_of(ts: float) -> int:
    return int(ts // MINUTE_S) * MINUTE_S


Point = tuple[str, Measure, float, float]
"""(patient, measure, ts, value)."""


def minute_aggregates(points: Iterable[Point]) -> list[MinuteAggregate]:
    """The aggregates of ``points``, one per patient, measure and minute, in that order."""
    out: dict[tuple[str, Measure, int], list[float]] = {}
    for patient, measure, ts, value in points:
        key = (patient, measure, minute_of(ts))
        acc = out.get(key)
        if acc is None:
            out[key] = [value, value, value, 1.0]
            continue
        acc[0] = min(acc[0], value)
        acc[1] = max(acc[1], value)
        acc[2] += value
        acc[3] += 1
    return [
        MinuteAggregate(p, m, minute, low, high, total, int(count))
        for (p, m, minute), (low, high, total, count) in sorted(out.items())
    ]
