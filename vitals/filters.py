"""Noise filtered before any rule sees a value: a causal Hampel filter per measure.

A loose wrist sensor gives single wild readings (a heart rate of 180 between two of 72); a
rule fed with them would call a tachycardia that never was. Each new value is judged against
the median of the last few values of its measure (itself included): one further from that
median than :attr:`FilterPolicy.sigmas` robust standard deviations (1.4826 times the median
absolute deviation), and further than the measure's :attr:`FilterPolicy.floor` (steady
readings have a deviation near 0), is an artefact: dropped, not passed on. Every value joins
the window all the same, so a genuine change of level is passed on once it makes up half the
window: with a window of 5, the third value at the new level. A gap longer than
:attr:`FilterPolicy.reset_after_s` starts the window again, and until it holds
:attr:`FilterPolicy.min_history` values nothing can be judged and every value passes.
Physiologically impossible values (:mod:`vitals.measures`) never pass and never join.

No I/O and no clock: the sample's own time is passed in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from vitals.measures import Measure, plausible

MAD_TO_SIGMA = 1.4826
"""The median absolute deviation of normal noise times this is its standard deviation."""
Verdict = Literal["kept", "spike", "impossible"]


@dataclass(frozen=True, slots=True)
class FilterPolicy:
    floor: float
    """The smallest departure from the median taken for a spike, in the measure's unit."""
    window: int = 5
    sigmas: float = 3.0
    reset_after_s: float = 600.0
    min_history: int = 2
    """Values before the new one the window must hold to judge it."""

    def __post_init__(self) -> None:
        if self.window < 3 or self.min_history < 1 or self.min_history >= self.window:
            raise ValueError("a window of 3 or more, judged with 1 to window - 1 values before")
        if self.floor <= 0 or self.sigmas <= 0:
            raise ValueError("a spike departs by a positive amount")


POLICIES: dict[Measure, FilterPolicy] = {
    "hr": FilterPolicy(floor=15.0),  # bpm: a resting heart varies by a few beats
    "spo2": FilterPolicy(floor=4.0),  # %: a few points are the oximeter's own noise
    "temp": FilterPolicy(floor=0.8),  # °C: skin temperature drifts slowly
    "bp_sys": FilterPolicy(floor=25.0, reset_after_s=6 * 3600.0),  # cuffs read a few times a day
    "bp_dia": FilterPolicy(floor=15.0, reset_after_s=6 * 3600.0),
}


@dataclass(slots=True)
class SpikeFilter:
    """One measure's recent values (kept or not) and when the last one was taken."""

    measure: Measure
    policy: FilterPolicy
    recent: deque[float] = field(default_factory=deque)
    last_ts: float | None = None

    def judge(self, value: float, ts: float) -> Verdict:
        """Whether ``value``, taken at ``ts``, passes on (``kept``) or is dropped."""
        if not plausible(self.measure, value):
            return "impossible"
        p = self.policy
        if self.last_ts is not None and ts - self.last_ts > p.reset_after_s:
            self.recent.clear()
        self.last_ts = ts
        enough = len(self.recent) >= p.min_history
        self.recent.append(value)
        if len(self.recent) > p.window:
            self.recent.popleft()
        if not enough:
            return "kept"
        return "spike" if departs(list(self.recent), value, p) else "kept"


def departs(window: list[float], value: float, p: FilterPolicy) -> bool:
    """Whether ``value`` lies further from the window's median than a spike must (beyond the
    floor, which most values are not: their spread is then never needed)."""
    centre = _median(window)
    off = abs(value - centre)
    if off <= p.floor:
        return False
    return off > p.sigmas * (MAD_TO_SIGMA * _median([abs(v - centre) for v in window]))


def _median(values: list[float]) -> float:
    """``statistics.median`` of a handful of values, without its generality's cost."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def filters(policies: dict[Measure, FilterPolicy] | None = None) -> dict[Measure, SpikeFilter]:
    """A fresh filter for every measure."""
    chosen = policies or POLICIES
    return {m: SpikeFilter(m, p) for m, p in chosen.items()}
