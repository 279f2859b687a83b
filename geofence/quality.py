"""Fix quality filters: is a caregiver's fix good enough to move her live position?

Pure: the previous accepted fix, the new fix, the time and the agency's :class:`QualityPolicy`
go in; a :class:`Verdict` comes out. Every verdict other than ``accept`` carries a stable reason
code, so dropped fixes can be counted by reason. The checks follow Traccar's filter set:

=====================  =========================================================  ============
reason                 the fix                                                    verdict
=====================  =========================================================  ============
``invalid``            has a non-finite or out-of-range coordinate                drop
``null_island``        is at (0, 0), what a phone with no fix reports             drop
``from_future``        is timed after ``now`` by more than ``max_future_s``       drop
``too_old``            is older than ``now`` by more than ``max_age_s``           drop
``poor_accuracy``      has ``acc`` above ``max_accuracy_m``                       drop
``duplicate``          has the same time as the last accepted fix                 history_only
``out_of_order``       is older than the last accepted fix                        history_only
``too_frequent``       comes less than ``min_interval_s`` after the last accepted drop
``impossible_jump``    implies a speed above ``max_speed_kmh`` from the last one  drop
=====================  =========================================================  ============

A ``history_only`` fix is a real position that must not move the live one (a late fix never
goes over a newer position); it is kept in the history, which is idempotent on the fix time,
so a duplicate replayed by Kafka is harmless there and fills the history if it was missed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

from geofence.geodesy import haversine_m

Outcome = Literal["accept", "history_only", "drop"]
NULL_ISLAND_DEGREES = 1e-6


@dataclass(frozen=True, slots=True)
class QualityPolicy:
    """Thresholds of the filters; ``None`` switches a filter off."""

    max_accuracy_m: float | None = 100.0
    max_speed_kmh: float | None = 200.0
    min_interval_s: float | None = 1.0
    max_future_s: float | None = 300.0
    max_age_s: float | None = 86_400.0


@dataclass(frozen=True, slots=True)
class AgencyPolicies:
    """The default policy and the agencies that override it."""

    default: QualityPolicy = field(default_factory=QualityPolicy)
    overrides: Mapping[str, QualityPolicy] = field(default_factory=dict)

    def for_agency(self, agency_id: str) -> QualityPolicy:
        return self.overrides.get(agency_id, self.default)


class Position(Protocol):
    """What the filters judge a fix against: the caregiver's last accepted fix (a ``FixEvent`` as
    it came, or what the live index keeps of it)."""

    @property
    def lat(self) -> float: ...
    @property
    def lon(self) -> float: ...
    @property
    def ts(self) -> float: ...
    @property
    def acc(self) -> float | None: ...


class Reading(Position, Protocol):
    """What the filters judge: a caregiver's fix as it came (the fixes topic's ``FixEvent``)."""

    @property
    def caregiver_id(self) -> str: ...
    @property
    def agency_id(self) -> str: ...


R = TypeVar("R", bound=Reading)


@dataclass(frozen=True, slots=True)
class AcceptedFix:
    """What the filters need to remember of a caregiver's last accepted fix."""

    lat: float
    lon: float
    ts: float
    acc: float | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    reason: str = ""


ACCEPT = Verdict("accept")


def assess(previous: Position | None, fix: Reading, now: float, policy: QualityPolicy) -> Verdict:
    """Judge one fix against the caregiver's last accepted fix (``None``: she has none)."""
    reason = _own_fault(fix, now, policy)
    if reason:
        return Verdict("drop", reason)
    return ACCEPT if previous is None else _against(previous, fix, policy)


def _own_fault(fix: Reading, now: float, policy: QualityPolicy) -> str:
    """The reason a fix is unusable whatever came before it, or ``""``."""
    if not _valid(fix):
        return "invalid"
    if abs(fix.lat) < NULL_ISLAND_DEGREES and abs(fix.lon) < NULL_ISLAND_DEGREES:
        return "null_island"
    if policy.max_future_s is not None and fix.ts > now + policy.max_future_s:
        return "from_future"
    if policy.max_age_s is not None and fix.ts < now - policy.max_age_s:
        return "too_old"
    if policy.max_accuracy_m is not None and (fix.acc or 0.0) > policy.max_accuracy_m:
        return "poor_accuracy"
    return ""


def _valid(fix: Reading) -> bool:
    if not (math.isfinite(fix.lat) and math.isfinite(fix.lon) and math.isfinite(fix.ts)):
        return False
    return -90.0 <= fix.lat <= 90.0 and -180.0 <= fix.lon <= 180.0


def _against(previous: Position, fix: Reading, policy: QualityPolicy) -> Verdict:
    """Judge a fix that is fine on its own against the last accepted one."""
    elapsed = fix.ts - previous.ts
    if elapsed <= 0:
        return Verdict("history_only", "duplicate" if elapsed == 0 else "out_of_order")
    if policy.min_interval_s is not None and elapsed < policy.min_interval_s:
        return Verdict("drop", "too_frequent")
    if _impossible_jump(previous, fix, policy):
        return Verdict("drop", "impossible_jump")
    return ACCEPT


def _impossible_jump(previous: Position, fix: Reading, policy: QualityPolicy) -> bool:
    """Too fast to be true, unless the two accuracy circles overlap (then it may be noise)."""
    if policy.max_speed_kmh is None:
        return False
    metres = haversine_m(previous.lat, previous.lon, fix.lat, fix.lon)
    if metres <= (previous.acc or 0.0) + (fix.acc or 0.0):
        return False
    return metres / (fix.ts - previous.ts) * 3.6 > policy.max_speed_kmh


# ---------------------------------------------------------------- a batch


@dataclass(slots=True)
class Screening(Generic[R]):
    """A batch of fixes sorted by verdict, and the reasons of everything not accepted; the
    fixes dropped with the reason of each."""

    live: list[R] = field(default_factory=list)
    history_only: list[R] = field(default_factory=list)
    reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    dropped: list[tuple[R, str]] = field(default_factory=list)

    @property
    def recorded(self) -> list[R]:
        """What the history keeps: accepted fixes and late ones."""
        return self.live + self.history_only


def screen(
    previous: Mapping[str, Position],
    fixes: Iterable[R],
    now: float,
    policy_for: Callable[[str], QualityPolicy],
) -> Screening[R]:
    """Judge a batch in order; each accepted fix becomes the next one's previous."""
    last: dict[str, Position] = dict(previous)
    out: Screening[R] = Screening()
    for fix in fixes:
        verdict = assess(last.get(fix.caregiver_id), fix, now, policy_for(fix.agency_id))
        if verdict.outcome == "accept":
            last[fix.caregiver_id] = fix
            out.live.append(fix)
            continue
        out.reasons[verdict.outcome, verdict.reason] += 1
        if verdict.outcome == "history_only":
            out.history_only.append(fix)
        else:
            out.dropped.append((fix, verdict.reason))
    return out
