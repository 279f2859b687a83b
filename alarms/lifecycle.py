"""An alarm's life, as ThingsBoard's: active or cleared, acknowledged or not, a severity; one
active alarm per source and kind, a repeat counting on it; cleared when its condition ends;
acknowledged, assigned and cleared by a person, each with who and when.

No I/O and no clock: each step takes the alarm as it stands (or None) and ``now``, and gives the
alarm as it stands after. :class:`AlarmBook` holds a set of them by (source, kind), for the
rules that raise and clear them and for the laws the tests hold them to.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

Severity = Literal["critical", "major", "minor", "warning"]
SEVERITIES: tuple[Severity, ...] = ("critical", "major", "minor", "warning")
"""Most urgent first."""
Status = Literal["active_unack", "active_ack", "cleared_unack", "cleared_ack"]


def worse(a: Severity, b: Severity) -> Severity:
    """The more urgent of two severities."""
    return a if SEVERITIES.index(a) <= SEVERITIES.index(b) else b


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm: ``source`` is what it is about (``device:{id}``, ``incident:{id}``,
    ``patient:{id}``), ``kind`` what is wrong (``incident_escalated``, ``device_offline``...)."""

    source: str
    kind: str
    severity: Severity
    raised_at: float
    last_at: float
    count: int = 1
    cleared_at: float | None = None
    cleared_by: str | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    assignee: str | None = None
    climbed: int = 0
    """Rungs of its escalation ladder taken so far."""

    @property
    def active(self) -> bool:
        return self.cleared_at is None

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    @property
    def status(self) -> Status:
        if self.active:
            return "active_ack" if self.acknowledged else "active_unack"
        return "cleared_ack" if self.acknowledged else "cleared_unack"


def raised(current: Alarm | None, source: str, kind: str, severity: Severity, now: float) -> Alarm:
    """The alarm after its condition is seen at ``now``: a new one, unless one is active for
    the same source and kind, which then counts the repeat (its severity the worse of the two)."""
    if current is None or not current.active:
        return Alarm(source, kind, severity, raised_at=now, last_at=now)
    if (current.source, current.kind) != (source, kind):
        raise ValueError("an alarm repeats only for its own source and kind")
    return replace(
        current,
        count=current.count + 1,
        last_at=max(current.last_at, now),
        severity=worse(current.severity, severity),
    )


def cleared(alarm: Alarm, by: str, now: float) -> Alarm:
    """Its condition ended, or a person cleared it; a cleared alarm stays as it was."""
    if not alarm.active:
        return alarm
    return replace(alarm, cleared_at=now, cleared_by=by)


def acknowledged(alarm: Alarm, by: str, now: float) -> Alarm:
    """A person took it: the ladder stops. The first acknowledgement stands."""
    if alarm.acknowledged:
        return alarm
    return replace(alarm, acknowledged_at=now, acknowledged_by=by)


def assigned(alarm: Alarm, to: str | None) -> Alarm:
    return replace(alarm, assignee=to)


@dataclass
class AlarmBook:
    """Alarms by (source, kind): the active one, or the last cleared."""

    alarms: dict[tuple[str, str], Alarm] = field(default_factory=dict)

    def raise_(self, source: str, kind: str, severity: Severity, now: float) -> Alarm:
        alarm = raised(self.alarms.get((source, kind)), source, kind, severity, now)
        self.alarms[source, kind] = alarm
        return alarm

    def clear(self, source: str, kind: str, by: str, now: float) -> Alarm | None:
        current = self.alarms.get((source, kind))
        if current is None:
            return None
        self.alarms[source, kind] = cleared(current, by, now)
        return self.alarms[source, kind]

    def active(self) -> Iterator[Alarm]:
        return (a for a in self.alarms.values() if a.active)
