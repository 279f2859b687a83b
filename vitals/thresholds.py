"""Thresholds that must hold for a duration, as ThingsBoard's duration rules: "heart rate
above 120 for 5 minutes". A rule raises once its condition has held, sample after sample, for
``hold_s``; it clears once the value is back past ``clear_at`` (hysteresis: a heart rate
hovering at the limit does not raise and clear in turn) and has stayed there for
``clear_hold_s``. Silence breaks a hold: samples further apart than ``max_gap_s`` start it
again (a monitor off the wrist says nothing either way), and an active rule stays active
through silence until readings say it has ended.

Each patient has :data:`DEFAULTS`, which an agency overrides per patient and kind (or turns
off) with :func:`for_patient`. No I/O and no clock: the samples' own times are passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from vitals.measures import NAMES, UNITS, Measure

Severity = Literal["critical", "major", "minor", "warning"]
"""As an alarm's (``alarms.lifecycle.Severity``)."""
Direction = Literal["above", "below"]
MAX_GAP_S = 180.0
"""Samples further apart than this break a hold: three times the slowest monitor's interval."""


@dataclass(frozen=True, slots=True)
class Threshold:
    """A rule: ``kind`` is the alarm it raises (``tachycardia``), ``measure`` what it reads."""

    kind: str
    measure: Measure
    direction: Direction
    limit: float
    hold_s: float
    clear_at: float
    clear_hold_s: float = 60.0
    severity: Severity = "major"
    max_gap_s: float = MAX_GAP_S

    def __post_init__(self) -> None:
        if self.hold_s < 0 or self.clear_hold_s < 0 or self.max_gap_s <= 0:
            raise ValueError("holds are not negative, gaps positive")
        if (
            (self.clear_at > self.limit)
            if self.direction == "above"
            else (self.clear_at < self.limit)
        ):
            raise ValueError(f"{self.kind}: clear_at must be on the safe side of the limit")

    def breached(self, value: float) -> bool:
        return value > self.limit if self.direction == "above" else value < self.limit

    def recovered(self, value: float) -> bool:
        return value <= self.clear_at if self.direction == "above" else value >= self.clear_at

    def describe(self) -> str:
        """``heart rate above 120 bpm for 5 min``."""
        held = f"{self.hold_s / 60:g} min" if self.hold_s >= 60 else f"{self.hold_s:g} s"
        what = f"{NAMES[self.measure]} {self.direction} {self.limit:g} {UNITS[self.measure]}"
        return f"{what} for {held}"


DEFAULTS: tuple[Threshold, ...] = (
    Threshold("tachycardia", "hr", "above", 120.0, 300.0, clear_at=110.0),
    Threshold("bradycardia", "hr", "below", 40.0, 300.0, clear_at=45.0),
    Threshold(
        "low_spo2", "spo2", "below", 90.0, 120.0, clear_at=92.0, severity="critical"
    ),  # hypoxaemia: a shorter hold, and a person at once
    Threshold("fever", "temp", "above", 38.0, 600.0, clear_at=37.5, severity="minor"),
    Threshold("hypothermia", "temp", "below", 35.0, 600.0, clear_at=35.5),
)


def for_patient(overrides: Mapping[str, Threshold | None]) -> tuple[Threshold, ...]:
    """The defaults with a patient's own rules: one of the same kind replaces the default, a
    kind mapped to None is off, and a kind of her own (``hypertension``) is added."""
    kept = [overrides.get(t.kind, t) for t in DEFAULTS]
    known = {t.kind for t in DEFAULTS}
    added = [t for kind, t in sorted(overrides.items()) if kind not in known]
    return tuple(t for t in (*kept, *added) if t is not None)


@dataclass(frozen=True, slots=True)
class Hold:
    """Where a rule stands for one patient."""

    active: bool = False
    breach_since: float | None = None
    clear_since: float | None = None
    last_ts: float | None = None


Change = Literal["raise", "clear"]


def step(rule: Threshold, hold: Hold, value: float, ts: float) -> tuple[Hold, Change | None]:
    """The rule after a kept value of its measure taken at ``ts`` (later than the last), and
    whether it raises or clears its alarm now. (Holds are made whole, not replaced field by
    field: this runs for every rule of every sample.)"""
    silence = hold.last_ts is not None and ts - hold.last_ts > rule.max_gap_s
    breach_since = None if silence else hold.breach_since  # silence breaks a hold
    clear_since = None if silence else hold.clear_since
    if hold.active:
        if not rule.recovered(value):
            return Hold(True, breach_since, None, ts), None
        since = ts if clear_since is None else clear_since
        if ts - since >= rule.clear_hold_s:
            return Hold(last_ts=ts), "clear"
        return Hold(True, breach_since, since, ts), None
    if not rule.breached(value):
        return Hold(False, None, clear_since, ts), None
    since = ts if breach_since is None else breach_since
    if ts - since >= rule.hold_s:
        return Hold(active=True, last_ts=ts), "raise"
    return Hold(False, since, clear_since, ts), None


def holds(rules: Iterable[Threshold], active: Iterable[str] = ()) -> dict[str, Hold]:
    """Each rule's start: active if its alarm is (a worker that took over a patient)."""
    on = set(active)
    return {r.kind: Hold(active=r.kind in on) for r in rules}
