"""Watching one home live: its recent events as a timeline that grows as events arrive, and
what a scoring of it calls for (alarms raised, alarms cleared, an incident opened), from the
detections a routine model returns and the alarms already standing.

Pure: no I/O, no clock. ``streams.routine_keeper`` keeps a :class:`Home` per patient, feeds it
events, scores it with its model and carries out the :class:`Steps`.

- A detection of a kind with no standing alarm raises one; one with a new start (her stillness
  ended and began again) raises it again (a repeat on the same alarm, with the new
  explanation); the same start again changes nothing.
- A kind standing with no detection now clears: its condition ended (she moved, she went to
  the kitchen, the night is over).
- Unusual inactivity (:data:`PERSISTING`) standing ``incident_after_s`` opens an incident for
  dispatch, once an episode: a person who may be on the floor needs a caregiver, not only an
  alarm.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np

from routines.features import KIND, ROOM, ROOMS, Reading, Timeline, local
from routines.models import Detection

KEEP_S = 48 * 3600.0
"""The events a live home keeps: her day so far, last night and the day before (a model reads
no further back when it scores)."""
PERSISTING = frozenset({"inactivity", "not_up", "long_bathroom"})
"""Kinds that may be a person on the floor: standing long enough, they open an incident."""
SEVERITY: Mapping[str, str] = {
    "inactivity": "major",
    "not_up": "major",
    "long_bathroom": "major",
    "night_wandering": "major",
    "missed_meal": "minor",
    "unusual_day": "warning",
}
"""Each alarm kind's severity (``alarms.lifecycle.Severity``)."""
DEFAULT_ROOM: Mapping[str, str] = {
    "door_sensor": "hall",
    "bed_sensor": "bedroom",
    "chair_sensor": "lounge",
}
"""Where a device is when its event does not say: the front door is in the hall, the bed in
the bedroom, the chair in the lounge. A motion sensor must say its room."""


def room_of(said: object, device_kind: str | None) -> str | None:
    """The room of an event: what it says (``data.room``) if it is a room the models know,
    else its device kind's; None when neither tells (the event is left out, and counted)."""
    if isinstance(said, str) and said in ROOM:
        return said
    return DEFAULT_ROOM.get(device_kind or "")


@dataclass(frozen=True, slots=True)
class Standing:
    """A routine alarm standing for a home: its kind, the episode's start, when it was raised
    and whether the episode already asked for an incident."""

    alarm_id: str
    kind: str
    start: float
    raised_at: float
    incident_asked: bool = False


@dataclass(frozen=True, slots=True)
class Steps:
    raise_: list[Detection] = field(default_factory=list)
    clear: list[str] = field(default_factory=list)
    open_incident: list[Standing] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.raise_ or self.clear or self.open_incident)


def judge(
    standing: Mapping[str, Standing],
    detections: Iterable[Detection],
    now: float,
    incident_after_s: float,
) -> Steps:
    """What the detections of a scoring call for, given the alarms standing."""
    seen: dict[str, Detection] = {}
    for d in detections:
        seen.setdefault(d.kind, d)
    steps = Steps()
    for kind, d in seen.items():
        was = standing.get(kind)
        if was is None or was.start != d.start:
            steps.raise_.append(d)
        elif (
            kind in PERSISTING
            and not was.incident_asked
            and now - was.raised_at >= incident_after_s
        ):
            steps.open_incident.append(was)
    steps.clear.extend(k for k in standing if k not in seen)
    return steps


@dataclass(slots=True)
class Home:
    """A home's recent events, deduplicated by event id, and its timeline built from them
    when asked (appended to when events come in time order, rebuilt when one comes late)."""

    zone: ZoneInfo
    seen: dict[str, float] = field(default_factory=dict)
    """Event id to its time: an event read from the record and delivered again is one."""
    _pending: list[Reading] = field(default_factory=list)
    _timeline: Timeline | None = None
    _late: bool = False

    def add(self, event_id: str, reading: Reading) -> bool:
        """Take an event; False when it was already taken."""
        if event_id in self.seen:
            return False
        self.seen[event_id] = reading.ts
        self._pending.append(reading)
        tl = self._timeline
        if tl is not None and len(tl) and reading.ts < tl.ts[-1]:
            self._late = True
        return True

    def timeline(self, now: float) -> Timeline:
        """Her events of the last :data:`KEEP_S` before ``now``, in time order."""
        tl = self._timeline
        if tl is None or self._late:
            tl = Timeline.of(self._readings(tl), self.zone)
        elif self._pending:
            tl = _appended(tl, self._pending)
        self._pending, self._late = [], False
        cut = tl.index(now - KEEP_S - 1e-6) if len(tl) and tl.ts[0] < now - KEEP_S else 0
        if cut:
            tl = Timeline(tl.zone, tl.ts[cut:], tl.room[cut:], tl.kind[cut:], tl.hour[cut:])
            old = now - KEEP_S
            self.seen = {k: t for k, t in self.seen.items() if t >= old}
        self._timeline = tl
        return tl

    def _readings(self, tl: Timeline | None) -> list[Reading]:
        kept = [] if tl is None else _readings_of(tl)
        return kept + self._pending


def _readings_of(tl: Timeline) -> list[Reading]:
    return [
        Reading(t, ROOMS[r], _KINDS[k])
        for t, r, k in zip(tl.ts.tolist(), tl.room.tolist(), tl.kind.tolist(), strict=True)
    ]


_KINDS = {i: name for name, i in KIND.items()}


def _appended(tl: Timeline, readings: list[Reading]) -> Timeline:
    new = sorted(readings, key=lambda r: r.ts)
    return Timeline(
        tl.zone,
        np.concatenate([tl.ts, np.array([r.ts for r in new], dtype=np.float64)]),
        np.concatenate([tl.room, np.array([ROOM[r.room] for r in new], dtype=np.int8)]),
        np.concatenate([tl.kind, np.array([KIND[r.kind] for r in new], dtype=np.int8)]),
        np.concatenate(
            [tl.hour, np.array([local(r.ts, tl.zone).hour for r in new], dtype=np.int8)]
        ),
    )
