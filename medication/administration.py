"""A caregiver's medication administration log: on a visit, she records a scheduled dose
administered, refused (by the patient) or unavailable. This decides whether an entry stands,
and what an administered dose makes of the dose. No I/O and no clock.

An entry is refused, with the reason, when the dose was never scheduled, she is not on a visit
to the patient, the dose is not hers to give now (more than :data:`EARLY_S` before it is due, or
more than :data:`STILL_GIVEN_S` after its window closed, as Hero still dispenses a missed dose
for 4 hours), or, for an administration, the dose was already taken (a second one is an
overdose). A dose administered before its window closed counts as taken (or late), so it is
never told missed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from medication.doses import Dose

Action = Literal["administered", "refused", "unavailable"]
Refusal = Literal["unscheduled_dose", "not_on_visit", "not_due", "already_taken"]
EARLY_S = 3600.0
"""A caregiver whose visit falls early may give a dose up to an hour before it is due."""
STILL_GIVEN_S = 4 * 3600.0
"""Hero: a missed dose can still be dispensed 4 hours after its window closed."""


def refusal_of(
    dose: Dose | None, action: Action, on_visit: bool, given_at: float, taken: bool
) -> Refusal | None:
    """Why the entry cannot stand, or None: it is recorded. ``taken``: the dose was taken
    already (by the dispenser's word or a caregiver's)."""
    if dose is None:
        return "unscheduled_dose"
    if not on_visit:
        return "not_on_visit"
    if not dose.due_at - EARLY_S <= given_at < dose.closes_at + STILL_GIVEN_S:
        return "not_due"
    if action == "administered" and taken:
        return "already_taken"
    return None


def taken_as(dose: Dose, action: Action, given_at: float) -> Literal["taken", "late"] | None:
    """What an entry makes of the dose: administered before its window closed, taken (or
    late); otherwise nothing (refused or unavailable, the dose stays untaken and is missed
    when its window closes)."""
    if action != "administered" or given_at >= dose.closes_at:
        return None
    return "taken" if given_at <= dose.due_at + dose.on_time_s else "late"


def day_outcome(outcome: str | None, actions: Sequence[str]) -> str:
    """What a family reads of a dose today, from its outcome (``taken``, ``late``, ``missed``
    or None) and the caregivers' entries for it, oldest first: administered by a caregiver;
    else taken or late by the dispenser's word; else the last ``refused`` or ``unavailable``
    (why it was not taken); else missed; else ``pending``."""
    if "administered" in actions:
        return "administered"
    if outcome in ("taken", "late"):
        return outcome
    if actions:
        return actions[-1]
    return outcome or "pending"
