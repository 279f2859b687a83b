"""The escalation ladder: who is told, and when, while an alarm stays active and nobody has
acknowledged it.

A ladder is rungs in order, each with the seconds after the alarm was raised when it is
climbed: the agency's dispatchers, then the on-call manager, then external notification (SMS,
e-mail, push, chat). An acknowledgement or the alarm clearing stops it. An agency may set a
ladder per severity; the defaults put a critical alarm through the whole ladder within 60 s of
being raised (a telecare centre answers 97.5 % of calls within 60 s), as the tests hold them to,
and an agency's own critical ladder may not take longer.

A ladder is written ``RUNG:SECONDS ...`` (``dispatchers:0 on_call:20 external:40``), as a person
gives it and is shown it (:func:`parse_ladder`, :func:`spelled`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from alarms.lifecycle import Alarm, Severity

Rung = Literal["dispatchers", "on_call", "external"]
RUNGS: tuple[Rung, ...] = ("dispatchers", "on_call", "external")
"""The rungs, in the order they are climbed."""
NOTIFIED: tuple[Rung, ...] = ("on_call", "external")
"""The rungs told at contacts (Apprise URLs); the dispatchers are told on their console."""
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
        unknown = [s.rung for s in self.steps if s.rung not in RUNGS]
        if unknown:
            raise ValueError(f"unknown rung {unknown[0]!r} (the rungs: {', '.join(RUNGS)})")
        order = [RUNGS.index(s.rung) for s in self.steps]
        if order != sorted(set(order)):
            raise ValueError(
                f"rungs out of order in {spelled(self)!r}: each rung once, in the order"
                f" {', '.join(RUNGS)}"
            )
        times = [s.after_s for s in self.steps]
        if any(t < 0 or not math.isfinite(t) for t in times):
            raise ValueError(f"{spelled(self)!r}: a rung's time is seconds from the raising on")
        if times != sorted(times):
            raise ValueError(
                f"times out of order in {spelled(self)!r}: a later rung is never climbed sooner"
            )

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


def check(severity: Severity, ladder: Ladder) -> Ladder:
    """``ladder`` if an agency may set it for ``severity``, else ValueError saying why: it
    climbs at least one rung, and a critical alarm's whole ladder within
    :data:`WHOLE_LADDER_WITHIN_S`."""
    if not ladder.steps:
        raise ValueError("a ladder climbs at least one rung")
    if severity == "critical" and ladder.top_s > WHOLE_LADDER_WITHIN_S:
        raise ValueError(
            f"a critical alarm climbs its whole ladder within {WHOLE_LADDER_WITHIN_S:g} s,"
            f" not {ladder.top_s:g} s"
        )
    return ladder


def parse_ladder(words: Sequence[str]) -> Ladder:
    """A ladder as a person writes it, ``RUNG:SECONDS`` a rung; ValueError saying what is
    wrong."""
    steps = []
    for word in words:
        rung, colon, after = word.partition(":")
        if not colon:
            raise ValueError(f"{word!r}: give each rung as RUNG:SECONDS, as on_call:20")
        if rung not in RUNGS:
            raise ValueError(f"unknown rung {rung!r} (the rungs: {', '.join(RUNGS)})")
        try:
            after_s = float(after)
        except ValueError:
            raise ValueError(f"{word!r}: {after!r} is not a number of seconds") from None
        steps.append(Step(rung, after_s))
    return Ladder(tuple(steps))


def spelled(ladder: Ladder) -> str:
    """The ladder as :func:`parse_ladder` reads it."""
    return " ".join(f"{s.rung}:{s.after_s:g}" for s in ladder.steps)
