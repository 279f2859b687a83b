"""The escalation ladder: who is told, and when, while an alarm stays active and nobody has
acknowledged it.

A ladder is rungs in order, each with the seconds after the alarm was raised when it is
climbed: the agency's dispatchers, then the on-call manager, then external notification (SMS,
e-mail, push, chat). An acknowledgement or the alarm clearing stops it. An agency may set a
ladder per severity; the defaults put a critical alarm through the whole ladder within 60 s of
being raised (a telecare centre answers 97.5 % of calls within 60 s), as the tests hold them to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from alarms.lifecycle import Alarm, Severity

Rung = Literal["dispatchers", "on_call", "external"]
WHOLE_LADDER_WITHIN_S = 60.0
"""A critical alarm is acknowledged by a person or has climbed the whole ladder this soon."""


@dataclass(frozen=True, slots=True)
class Step:
    rung: Rung
    after_s: float


@dataclass(frozen=True, slots=True)
class Ladder:
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        times = [s.after_s for s in self.steps]
        if times != sorted(times) or any(t < 0 for t in times):
            raise ValueError("a ladder's steps are climbed in order, from the raising on")

    @property
    def top_s(self) -> float:
        """When its last rung is climbed, after the raising."""
        return self.steps[-1].after_s if self.steps else 0.0

    def due(self, alarm: Alarm, now: float) -> tuple[Step, ...]:
        """The rungs to climb now: those not climbed yet whose time has come, while the alarm
        is active and nobody acknowledged it."""
        if not alarm.active or alarm.acknowledged:
            return ()
        waiting = self.steps[alarm.climbed :]
        return tuple(s for s in waiting if alarm.raised_at + s.after_s <= now)

    def next_at(self, alarm: Alarm) -> float | None:
        """When the next rung is due (None when there is none, or the ladder stopped)."""
        if not alarm.active or alarm.acknowledged or alarm.climbed >= len(self.steps):
            return None
        return alarm.raised_at + self.steps[alarm.climbed].after_s


DEFAULT_LADDERS: Mapping[Severity, Ladder] = {
    "critical": Ladder((Step("dispatchers", 0.0), Step("on_call", 20.0), Step("external", 40.0))),
    "major": Ladder((Step("dispatchers", 0.0), Step("on_call", 120.0), Step("external", 600.0))),
    "minor": Ladder((Step("dispatchers", 0.0), Step("on_call", 1800.0))),
    "warning": Ladder((Step("dispatchers", 0.0),)),
}


def ladder_for(
    severity: Severity, agency_ladders: Mapping[Severity, Ladder] | None = None
) -> Ladder:
    """The agency's ladder for the severity, else the default."""
    if agency_ladders and severity in agency_ladders:
        return agency_ladders[severity]
    return DEFAULT_LADDERS[severity]
