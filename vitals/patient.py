"""One patient's vitals as they come: each sample's values filtered, the kept ones fed to her
thresholds, in the order the samples were taken.

:class:`PatientVitals` owns a patient's filters (:mod:`vitals.filters`) and where each of her
rules stands (:mod:`vitals.thresholds`). A sample no later than the last one judged (sent again,
or a monitor's buffer emptied after a dropout) is history only: kept as it is, judged by
nothing, since the filters and the holds look forward in time. No I/O and no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from vitals.filters import FilterPolicy, SpikeFilter
from vitals.filters import filters as fresh_filters
from vitals.measures import Measure
from vitals.thresholds import Change, Hold, Threshold, step
from vitals.thresholds import holds as fresh_holds


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """A rule raised or cleared its alarm on a sample."""

    kind: str
    change: Change
    rule: Threshold
    value: float
    ts: float

    @property
    def detail(self) -> str:
        """What a dispatcher reads: ``heart rate above 120 bpm for 5 min (now 131)``."""
        if self.change == "clear":
            return f"{self.rule.describe()}: ended (now {self.value:g})"
        return f"{self.rule.describe()} (now {self.value:g})"


@dataclass(frozen=True, slots=True)
class Judged:
    """A sample after the filters: the values kept, those dropped, what its rules did."""

    ts: float
    kept: dict[Measure, float]
    dropped: tuple[Measure, ...] = ()
    changes: tuple[AlarmChange, ...] = ()
    late: bool = False


@dataclass
class PatientVitals:
    rules: tuple[Threshold, ...]
    filters: dict[Measure, SpikeFilter] = field(default_factory=fresh_filters)
    holds: dict[str, Hold] = field(default_factory=dict)
    last_ts: float | None = None

    @classmethod
    def start(
        cls,
        rules: Iterable[Threshold],
        active: Iterable[str] = (),
        policies: dict[Measure, FilterPolicy] | None = None,
    ) -> PatientVitals:
        """A patient first seen: her rules, the kinds whose alarm is active already."""
        chosen = tuple(rules)
        return cls(chosen, fresh_filters(policies), fresh_holds(chosen, active))

    def retune(self, rules: Iterable[Threshold]) -> None:
        """Her rules changed: a kind she still has keeps where it stands (an active alarm stays
        active), a new kind starts afresh, a kind gone is forgotten."""
        self.rules = tuple(rules)
        self.holds = {r.kind: self.holds.get(r.kind, Hold()) for r in self.rules}

    def observe(self, ts: float, values: Mapping[Measure, float]) -> Judged:
        """Judge one sample of hers taken at ``ts``."""
        if self.last_ts is not None and ts <= self.last_ts:
            return Judged(ts, dict(values), late=True)
        self.last_ts = ts
        kept: dict[Measure, float] = {}
        dropped: list[Measure] = []
        for measure, value in values.items():
            if self.filters[measure].judge(value, ts) == "kept":
                kept[measure] = value
            else:
                dropped.append(measure)
        return Judged(ts, kept, tuple(dropped), self._apply(kept, ts))

    def _apply(self, kept: Mapping[Measure, float], ts: float) -> tuple[AlarmChange, ...]:
        changes = []
        for rule in self.rules:
            value = kept.get(rule.measure)
            if value is None:
                continue
            self.holds[rule.kind], change = step(rule, self.holds[rule.kind], value, ts)
            if change is not None:
                changes.append(AlarmChange(rule.kind, change, rule, value, ts))
        return tuple(changes)

    def active(self) -> list[str]:
        """The kinds whose alarm this patient's rules hold raised."""
        return [kind for kind, hold in self.holds.items() if hold.active]
