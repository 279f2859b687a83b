"""Which caregiver is at hand for a patient: who is told of a missed dose beside the family,
and whether a caregiver is on a visit to the patient when she logs a dose. No I/O.

The caregiver told of a missed dose is the one whose visit to the patient is nearest now: a
visit she is at (checked in, not left) first; else the visit whose rostered time is nearest
now, within :data:`VISIT_REACH_S` either side (one who has just left knows the home, one due
soon will be there). A visit missed is nobody's. With no such visit, the agency's caregivers on
shift now are told (those who may give medicines where any may): someone working must be able
to act.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

VISIT_REACH_S = 12 * 3600.0
"""A visit this far from now (before its start or after its end) makes nobody at hand."""
AT_HOME = frozenset({"arrived", "in_visit"})
OVER = frozenset({"left", "missed"})


@dataclass(frozen=True, slots=True)
class VisitSpan:
    """A rostered visit to the patient: whose, when, and its state (``visits.rules``' words)."""

    visit_id: str
    caregiver_id: str
    start: float
    end: float
    state: str


@dataclass(frozen=True, slots=True)
class OnShift:
    """A caregiver of the agency on shift now, and whether she may give medicines."""

    caregiver_id: str
    gives_medicines: bool = False


def distance(visit: VisitSpan, now: float) -> float:
    """How far ``now`` is from the visit's rostered time (0 within it)."""
    return max(visit.start - now, now - visit.end, 0.0)


def caregiver_at_hand(visits: Iterable[VisitSpan], now: float) -> str | None:
    """The caregiver at the patient's home, or with the visit nearest now; None when none is
    within :data:`VISIT_REACH_S`."""
    usable = [v for v in visits if v.state != "missed"]
    there = [v for v in usable if v.state in AT_HOME]
    if there:
        return min(there, key=lambda v: (distance(v, now), v.visit_id)).caregiver_id
    near = [v for v in usable if distance(v, now) <= VISIT_REACH_S]
    if not near:
        return None
    return min(near, key=lambda v: (distance(v, now), v.visit_id)).caregiver_id


def caregivers_to_tell(
    visits: Iterable[VisitSpan], on_shift: Sequence[OnShift], now: float
) -> tuple[str, ...]:
    """Who is told of a missed dose beside the family: the caregiver at hand, or the agency's
    caregivers on shift (those who give medicines, when any does)."""
    at_hand = caregiver_at_hand(visits, now)
    if at_hand is not None:
        return (at_hand,)
    able = [s for s in on_shift if s.gives_medicines] or list(on_shift)
    return tuple(sorted({s.caregiver_id for s in able}))


def visit_now(visits: Iterable[VisitSpan], caregiver_id: str, now: float) -> VisitSpan | None:
    """Her visit to the patient now: one she is checked in at, or whose rostered time holds
    ``now`` and that is not over (her check-in may lag behind a phone with no fix indoors)."""
    hers = [v for v in visits if v.caregiver_id == caregiver_id and v.state not in OVER]
    there = [v for v in hers if v.state in AT_HOME]
    during = [v for v in hers if v.start <= now <= v.end]
    found = sorted(there, key=lambda v: v.visit_id) or sorted(during, key=lambda v: v.visit_id)
    return found[0] if found else None
