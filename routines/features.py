"""Features of a home's routine from its ambient sensor events: activity per hour of day and
room, time since the last movement, the first movement of the day, night-time activity and
front-door openings, and how long she stays in the bathroom or the kitchen.

An event is anything with ``ts`` (epoch s), ``room`` and ``kind`` (:class:`Event`); the
simulator's and the ingest's sensor events both are. Every event is a sign of a person moving
(a motion sensor firing, a door, getting in or out of bed or a chair). Times of day are wall-clock
times in the home's time zone (``zoneinfo``): 07:00 stays 07:00 across a change of clocks, and a
day is 23 or 25 hours long when the clocks change.

A *resident's day* starts at 04:00 local time (:data:`DAY_START_H`), so a late night belongs to
the evening before it. The night of a day is 23:00 the evening before to 06:00 that morning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

ROOMS = ("bedroom", "bathroom", "kitchen", "lounge", "hall")
KINDS = ("motion", "door_open", "door_closed", "bed_in", "bed_out", "chair_in", "chair_out")
ROOM = {name: i for i, name in enumerate(ROOMS)}
KIND = {name: i for i, name in enumerate(KINDS)}
DAY_START_H = 4
NIGHT_FROM_H = 23
NIGHT_TO_H = 6
BACK_TO_BED_S = 30 * 60.0
FRONT_DOOR_ROOM = "hall"
"""The front door's contact is in the hall; the fridge's is in the kitchen."""


class Event(Protocol):
    """A sensor event as the features need it."""

    @property
    def ts(self) -> float: ...
    @property
    def room(self) -> str: ...
    @property
    def kind(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Reading:
    """A plain sensor event: when, in which room, what kind."""

    ts: float
    room: str
    kind: str


def local(ts: float, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ts, zone)


def resident_day(ts: float, zone: ZoneInfo) -> date:
    """The resident's day a moment belongs to: before 04:00 local it is still yesterday."""
    at = local(ts, zone)
    return at.date() - timedelta(days=1) if at.hour < DAY_START_H else at.date()


def at_local(day: date, hour: int, zone: ZoneInfo, minute: int = 0) -> float:
    """The moment of ``hour:minute`` local on ``day`` (hours past 23 run into the next day)."""
    extra, hour = divmod(hour, 24)
    return datetime.combine(day + timedelta(days=extra), time(hour, minute), zone).timestamp()


def day_bounds(day: date, zone: ZoneInfo) -> tuple[float, float]:
    """A resident's day: 04:00 local to 04:00 local the next day (23 to 25 hours)."""
    return at_local(day, DAY_START_H, zone), at_local(day, DAY_START_H + 24, zone)


def night_bounds(day: date, zone: ZoneInfo) -> tuple[float, float]:
    """The night ending on the morning of ``day``: 23:00 the evening before to 06:00."""
    return at_local(day - timedelta(days=1), NIGHT_FROM_H, zone), at_local(day, NIGHT_TO_H, zone)


@dataclass(frozen=True, slots=True)
class Timeline:
    """A home's events in time order as arrays, with each event's local hour: built once,
    then every feature is a binary search and a slice."""

    zone: ZoneInfo
    ts: npt.NDArray[np.float64]
    room: npt.NDArray[np.int8]
    kind: npt.NDArray[np.int8]
    hour: npt.NDArray[np.int8]

    @classmethod
    def of(cls, events: Iterable[Event], zone: str | ZoneInfo) -> Timeline:
        tz = zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)
        rows = sorted(((e.ts, ROOM[e.room], KIND[e.kind]) for e in events), key=lambda r: r[0])
        ts = np.array([r[0] for r in rows], dtype=np.float64)
        return cls(
            tz,
            ts,
            np.array([r[1] for r in rows], dtype=np.int8),
            np.array([r[2] for r in rows], dtype=np.int8),
            np.array([local(t, tz).hour for t in ts.tolist()], dtype=np.int8),
        )

    def __len__(self) -> int:
        return len(self.ts)

    def index(self, t: float) -> int:
        """How many events happened at or before ``t``."""
        return int(np.searchsorted(self.ts, t, side="right"))

    def span(self, start: float, end: float) -> slice:
        """Events with ``start <= ts < end``."""
        return slice(
            int(np.searchsorted(self.ts, start, side="left")),
            int(np.searchsorted(self.ts, end, side="left")),
        )

    def before(self, t: float) -> Timeline:
        """The events strictly before ``t``: what a model trained up to ``t`` may see."""
        n = int(np.searchsorted(self.ts, t, side="left"))
        return Timeline(self.zone, self.ts[:n], self.room[:n], self.kind[:n], self.hour[:n])


def hourly_activity(tl: Timeline, start: float, end: float) -> npt.NDArray[np.int64]:
    """Events per local hour of day (rows 0-23) and room (columns in :data:`ROOMS` order)
    between ``start`` and ``end``."""
    s = tl.span(start, end)
    out = np.zeros((24, len(ROOMS)), dtype=np.int64)
    np.add.at(out, (tl.hour[s].astype(np.int64), tl.room[s].astype(np.int64)), 1)
    return out


def last_movement(tl: Timeline, now: float, room: str | None = None) -> float | None:
    """When she last moved at or before ``now`` (in ``room``, if named), or None."""
    n = tl.index(now)
    if room is None:
        return float(tl.ts[n - 1]) if n else None
    hits = np.flatnonzero(tl.room[:n] == ROOM[room])
    return float(tl.ts[hits[-1]]) if len(hits) else None


def since_last_movement(tl: Timeline, now: float) -> float | None:
    """Seconds of stillness at ``now``, or None if she has never moved."""
    last = last_movement(tl, now)
    return None if last is None else now - last


def first_movement(tl: Timeline, day: date, now: float | None = None) -> float | None:
    """When she got up on ``day``: the first ``bed_out``, or the first motion outside the
    bedroom, from 04:00 local (and at or before ``now``, if given), that no ``bed_in`` follows
    within :data:`BACK_TO_BED_S` (a trip to the bathroom at 05:00 and back to bed is not getting
    up); None if not yet."""
    start, end = day_bounds(day, tl.zone)
    if now is not None:
        end = min(end, np.nextafter(now, np.inf))
    s = tl.span(start, end)
    kind, room, ts = tl.kind[s], tl.room[s], tl.ts[s]
    up = (kind == KIND["bed_out"]) | ((kind == KIND["motion"]) & (room != ROOM["bedroom"]))
    back = ts[kind == KIND["bed_in"]]
    for t in ts[up].tolist():
        nxt = int(np.searchsorted(back, t, side="right"))
        if nxt == len(back) or back[nxt] - t > BACK_TO_BED_S:
            return float(t)
    return None


@dataclass(frozen=True, slots=True)
class Night:
    """The night ending on the morning of a day: events out of the bedroom and front-door
    openings between 23:00 and 06:00."""

    active_events: int
    front_door_openings: int
    first_door_open: float | None


def night_activity(tl: Timeline, day: date, now: float | None = None) -> Night:
    start, end = night_bounds(day, tl.zone)
    if now is not None:
        end = min(end, np.nextafter(now, np.inf))
    s = tl.span(start, end)
    room, kind = tl.room[s], tl.kind[s]
    active = int(np.count_nonzero(room != ROOM["bedroom"]))
    door = np.flatnonzero((kind == KIND["door_open"]) & (room == ROOM[FRONT_DOOR_ROOM]))
    return Night(active, len(door), float(tl.ts[s][door[0]]) if len(door) else None)


@dataclass(frozen=True, slots=True)
class Dwell:
    """A stay in one room: from its first event to the first event in another room (or
    ``now``, when she is still there: ``open``)."""

    start: float
    seconds: float
    open: bool


def dwells(tl: Timeline, room: str, start: float, now: float) -> list[Dwell]:
    """Her stays in ``room`` that began between ``start`` and ``now``."""
    s = tl.span(start, np.nextafter(now, np.inf))
    ts, rooms = tl.ts[s], tl.room[s]
    out: list[Dwell] = []
    here = ROOM[room]
    began: float | None = None
    for t, r in zip(ts.tolist(), rooms.tolist(), strict=True):
        if r == here and began is None:
            began = t
        elif r != here and began is not None:
            out.append(Dwell(began, t - began, False))
            began = None
    if began is not None:
        out.append(Dwell(began, now - began, True))
    return out


def dwell_total(tl: Timeline, room: str, start: float, now: float) -> float:
    return sum(d.seconds for d in dwells(tl, room, start, now))


def day_window(tl: Timeline, day: date, until: float) -> npt.NDArray[np.float64]:
    """One day so far (04:00 local to ``until``) as a vector for a model over day windows:
    log events per room, hours since she got up (0 if not yet), hours of stillness at
    ``until``, hours in the bathroom and in the kitchen, night events and door openings."""
    start, _ = day_bounds(day, tl.zone)
    s = tl.span(start, np.nextafter(until, np.inf))
    per_room = np.bincount(tl.room[s].astype(np.int64), minlength=len(ROOMS))
    up = first_movement(tl, day, until)
    still = since_last_movement(tl, until)
    night = night_activity(tl, day)
    return np.array(
        [
            *np.log1p(per_room).tolist(),
            0.0 if up is None else (until - up) / 3600.0,
            min(24.0, (until - start) / 3600.0 if still is None else still / 3600.0),
            dwell_total(tl, "bathroom", start, until) / 3600.0,
            dwell_total(tl, "kitchen", start, until) / 3600.0,
            float(np.log1p(night.active_events)),
            float(night.front_door_openings),
        ],
        dtype=np.float64,
    )


def days_of(tl: Timeline, start: float, end: float) -> Sequence[date]:
    """The resident's days that start between ``start`` and ``end``, in order."""
    if end <= start:
        return []
    first, last = resident_day(start, tl.zone), resident_day(end, tl.zone)
    out = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [d for d in out if start <= day_bounds(d, tl.zone)[0] < end]
