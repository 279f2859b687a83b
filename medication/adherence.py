"""How grave a missed dose is: a critical medicine missed, or misses that repeat (two of the
last three doses), raise a more urgent alarm than one dose forgotten once. No I/O.

The outcomes are a patient's last doses whose windows have closed, oldest first, the missed
one last; a dose a caregiver administered counts as taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from medication.doses import Dose

MissSeverity = Literal["critical", "major"]
REPEATED_MISSES = 2
"""This many misses among the last :data:`RECENT_DOSES` doses are misses that repeat."""
RECENT_DOSES = 3
MISSED = "missed"


def missed_repeatedly(outcomes: Sequence[str]) -> bool:
    """Whether :data:`REPEATED_MISSES` of the last :data:`RECENT_DOSES` outcomes are misses."""
    return sum(o == MISSED for o in outcomes[-RECENT_DOSES:]) >= REPEATED_MISSES


def miss_severity(dose: Dose, outcomes: Sequence[str]) -> MissSeverity:
    """A missed dose's alarm: critical for a critical medicine or misses that repeat, else
    major."""
    return "critical" if dose.critical or missed_repeatedly(outcomes) else "major"
