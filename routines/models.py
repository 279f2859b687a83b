"""Models of a resident's routine, each learnt from her own past days, each saying when now is
not like them and why, in words a person can act on.

Three families, one shape (:class:`RoutineModel`): ``fit(history, until, false_alarms=())`` learns
from the events strictly before ``until`` (never the day it will score) and from the false alarms
a dispatcher labelled (:class:`FalseAlarm`), and ``score(timeline, now)`` reads the events at or
before ``now`` and returns :class:`Detection` s (kind, a start estimate, an explanation).
``score`` is pure and stateless, so it can run every few minutes when nothing arrives: silence
is the signal.

- :class:`Rule`: fixed thresholds, the telecare vocabulary (no movement for 4 h in the day, not up
  by 10:00, front door between 00:00 and 05:00, an hour in the bathroom, no kitchen by 13:00).
- :class:`HourlyBaseline`: per 5 minutes of her day, how long she is usually still, when she is
  usually in the kitchen (her meals), when she usually gets up, how often the front door opens at
  night and how long she stays in the bathroom; now is anomalous when it would be rare for that
  time of day over her last 28 days. Rest is not stillness: in bed, a still nap in her chair up
  to her longest, out of the house. A labelled false alarm raises her thresholds where it was
  raised.
- :class:`DayWindowLOF`: the day so far as a vector (:func:`routines.features.day_window`)
  against the same hour of her past days, by Local Outlier Factor: days unlike her days (less
  activity over days, a late morning, a drift) for care review.

A home with fewer than :data:`MIN_DAYS` days of history is judged against a population prior
(the rule's thresholds) until it has them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from routines.features import (
    BACK_TO_BED_S,
    DAY_START_H,
    FRONT_DOOR_ROOM,
    KIND,
    NIGHT_TO_H,
    ROOM,
    Timeline,
    at_local,
    day_bounds,
    day_window,
    dwells,
    first_movement,
    local,
    resident_day,
)

DetectionKind = Literal[
    "inactivity", "not_up", "night_wandering", "long_bathroom", "missed_meal", "unusual_day"
]
MIN_DAYS = 14
"""Below this many days of her own history, a home is judged by the population prior."""
WINDOW_DAYS = 28
STEP_S = 300.0
SLOTS = 288
"""Five-minute slots of a resident's day, counted from 04:00 local."""
HOUR = 3600.0
WEEKEND = 5
"""Saturday and Sunday (``date.weekday() >= 5``)."""
MIN_ALIKE = 4


@dataclass(frozen=True, slots=True)
class Detection:
    kind: DetectionKind
    start: float
    """When the anomaly probably began (her last movement, the time she is usually up)."""
    explanation: str


@dataclass(frozen=True, slots=True)
class FalseAlarm:
    """A dispatcher's label: the alarm of ``kind`` raised at ``at`` (its detection's start
    estimate ``start``) was a false alarm. A model fitted with it should not raise the same
    alarm in the same situation again."""

    kind: DetectionKind
    at: float
    start: float


class RoutineModel(Protocol):
    name: str

    def fit(
        self, history: Timeline, until: float, false_alarms: Sequence[FalseAlarm] = ()
    ) -> None: ...

    def score(self, tl: Timeline, now: float) -> list[Detection]: ...


def hhmm(ts: float, tl: Timeline) -> str:
    return local(ts, tl.zone).strftime("%H:%M")


def duration(seconds: float) -> str:
    m = round(seconds / 60.0)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


def training_days(history: Timeline, until: float) -> list[date]:
    """Her complete days before ``until`` that have any event (an empty house, away in hospital,
    teaches nothing of her routine), the last :data:`WINDOW_DAYS`."""
    if not len(history):
        return []
    first = resident_day(float(history.ts[0]), history.zone)
    last = resident_day(until, history.zone) - timedelta(days=1)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    bounds = [(d, day_bounds(d, history.zone)) for d in days]
    days = [
        d
        for d, (lo, hi) in bounds
        if hi <= until and history.span(lo, hi).stop > history.span(lo, hi).start
    ]
    return days[-WINDOW_DAYS:]


def _out(tl: Timeline, n: int) -> bool:
    """Her last event was the front door: she went out, and her silence is not stillness."""
    return (
        bool(n)
        and tl.room[n - 1] == ROOM[FRONT_DOOR_ROOM]
        and tl.kind[n - 1]
        in (
            KIND["door_open"],
            KIND["door_closed"],
        )
    )


def _in_bed(tl: Timeline, n: int) -> bool:
    """The bed sensor's last word at or before event ``n`` was that she got in: her stillness
    is sleep (or rest), not a fall."""
    bed = np.flatnonzero((tl.kind[:n] == KIND["bed_in"]) | (tl.kind[:n] == KIND["bed_out"]))
    return bool(len(bed)) and tl.kind[bed[-1]] == KIND["bed_in"]


def _slot(tl: Timeline, now: float) -> tuple[date, float, int]:
    day = resident_day(now, tl.zone)
    start = day_bounds(day, tl.zone)[0]
    return day, start, min(SLOTS - 1, int((now - start) // STEP_S))


def _last(tl: Timeline, n: int, room: int | None) -> float | None:
    if room is None:
        return float(tl.ts[n - 1]) if n else None
    hits = np.flatnonzero(tl.room[:n] == room)
    return float(tl.ts[hits[-1]]) if len(hits) else None


def _front_door_at_night(tl: Timeline, now: float, from_h: int = 0, to_h: int = 5) -> float | None:
    """Her front door's first opening between ``from_h`` and ``to_h`` local tonight, at or
    before ``now``; asked until 06:00, after which the night is over."""
    at = local(now, tl.zone)
    if at.hour >= NIGHT_TO_H:
        return None
    lo, hi = at_local(at.date(), from_h, tl.zone), at_local(at.date(), to_h, tl.zone)
    s = tl.span(lo, min(hi, float(np.nextafter(now, np.inf))))
    door = np.flatnonzero((tl.kind[s] == KIND["door_open"]) & (tl.room[s] == ROOM[FRONT_DOOR_ROOM]))
    return float(tl.ts[s][door[0]]) if len(door) else None


# ---------------------------------------------------------------- the fixed rule


@dataclass(slots=True)
class Rule:
    """Fixed thresholds, the same for everyone: what a telecare rule engine does."""

    still_s: float = 4 * HOUR
    awake_from_h: int = 8
    awake_to_h: int = 22
    up_by_h: int = 10
    bathroom_s: float = HOUR
    kitchen_by_h: int = 13
    name: str = "rule"

    def fit(self, history: Timeline, until: float, false_alarms: Sequence[FalseAlarm] = ()) -> None:
        """A rule learns nothing, not even from its false alarms."""

    def score(self, tl: Timeline, now: float) -> list[Detection]:
        n = tl.index(now)
        day, start, _ = _slot(tl, now)
        hour = local(now, tl.zone).hour
        out: list[Detection] = []
        up = first_movement(tl, day, now)
        last = _last(tl, n, None)
        awake = self.awake_from_h <= hour < self.awake_to_h
        if awake and up is None and hour >= self.up_by_h:
            usual = start + (self.up_by_h - DAY_START_H) * HOUR
            out.append(Detection("not_up", usual, f"not up by {self.up_by_h:02d}:00"))
        elif (
            awake
            and up is not None
            and last is not None
            and now - last >= self.still_s
            and not _out(tl, n)
            and not _in_bed(tl, n)
        ):
            out.append(
                Detection(
                    "inactivity",
                    last,
                    f"no movement since {hhmm(last, tl)} ({duration(now - last)})",
                )
            )
        door = _front_door_at_night(tl, now)
        if door is not None:
            out.append(Detection("night_wandering", door, f"front door opened at {hhmm(door, tl)}"))
        for d in dwells(tl, "bathroom", max(start, now - 6 * HOUR), now)[-1:]:
            if d.open and d.seconds >= self.bathroom_s and n and tl.ts[n - 1] < now:
                out.append(
                    Detection(
                        "long_bathroom",
                        d.start,
                        f"in the bathroom since {hhmm(d.start, tl)} ({duration(d.seconds)})",
                    )
                )
        if up is not None and hour >= self.kitchen_by_h and awake:
            kitchen = tl.span(start, np.nextafter(now, np.inf))
            if not np.any(tl.room[kitchen] == ROOM["kitchen"]):
                by = start + (self.kitchen_by_h - DAY_START_H) * HOUR
                out.append(
                    Detection(
                        "missed_meal", by, f"no kitchen motion today by {self.kitchen_by_h}:00"
                    )
                )
        return out


# ---------------------------------------------------------------- the per-hour baseline

_CHUNK = 256
_BED = (KIND["bed_in"], KIND["bed_out"])
_KITCHEN = ROOM["kitchen"]
_BATHROOM = ROOM["bathroom"]
_BEDROOM = ROOM["bedroom"]
_HALL = ROOM[FRONT_DOOR_ROOM]
_MOTION = KIND["motion"]
_BED_IN, _BED_OUT = _BED
_DOOR_OPEN = KIND["door_open"]
_CHAIR_IN, _CHAIR_OUT = KIND["chair_in"], KIND["chair_out"]
_DOOR_CLOSED = KIND["door_closed"]
_LEAVING_S = 60.0
"""No motion in the hall this long after the front door closed: she is out."""
_LABEL_BEFORE = 6
_LABEL_AFTER = 24
"""A labelled false alarm counts for the slots from 30 min before it to two hours after it."""


def _stillness(tl: Timeline, days: Sequence[date], room: str | None) -> npt.NDArray[np.float64]:
    """Her stillness (or time since ``room``) every 5 minutes of each day: rows days, columns
    slots from 04:00 local; the tail of a 23-hour day is left NaN."""
    ts = tl.ts if room is None else tl.ts[tl.room == ROOM[room]]
    out = np.full((len(days), SLOTS), np.nan)
    for i, d in enumerate(days):
        start, end = day_bounds(d, tl.zone)
        grid = start + STEP_S * np.arange(SLOTS)
        grid = grid[grid < end]
        idx = np.searchsorted(ts, grid, side="right") - 1
        last = np.where(idx >= 0, ts[np.maximum(idx, 0)], start - 24 * HOUR)
        out[i, : len(grid)] = grid - last
    return out


def _window_max(s: npt.NDArray[np.float64], half: int = 3) -> npt.NDArray[np.float64]:
    """Each day's longest stillness within ``half`` slots either side of each slot."""
    padded = np.pad(s, ((0, 0), (half, half)), constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1, axis=1)
    with np.errstate(all="ignore"):
        m = np.nanmax(np.where(np.isnan(windows), -np.inf, windows), axis=2)
    return np.where(np.isinf(m), np.nan, m)


def _kitchen_slots(tl: Timeline, days: Sequence[date]) -> npt.NDArray[np.int16]:
    """For each day (rows), how many of its 5-minute slots before each slot (columns, 0 to
    :data:`SLOTS`) had kitchen motion: a difference of two columns says whether she was in the
    kitchen between two times of day."""
    out = np.zeros((len(days), SLOTS + 1), dtype=np.int16)
    kitchen = tl.room == _KITCHEN
    for i, d in enumerate(days):
        start, end = day_bounds(d, tl.zone)
        s = tl.span(start, end)
        at = tl.ts[s][kitchen[s]]
        slots = np.zeros(SLOTS, dtype=np.int16)
        slots[np.minimum(SLOTS - 1, ((at - start) // STEP_S).astype(np.int64))] = 1
        out[i, 1:] = np.cumsum(slots)
    return out


def _rfind(tl: Timeline, lo: int, hi: int, match: Callable[[slice], npt.NDArray[np.bool_]]) -> int:
    """The last event in ``[lo, hi)`` that ``match`` picks, or -1: read back a chunk at a time,
    so the answer a few events back costs a few events."""
    while hi > lo:
        a = max(lo, hi - _CHUNK)
        hits = np.flatnonzero(match(slice(a, hi)))
        if len(hits):
            return a + int(hits[-1])
        hi = a
    return -1


def _bed_word(tl: Timeline, n: int) -> int:
    """The index of the bed sensor's last word before event ``n``, or -1."""
    kind = tl.kind
    return _rfind(tl, 0, n, lambda s: (kind[s] == _BED_IN) | (kind[s] == _BED_OUT))


def _up_today(tl: Timeline, i0: int, n: int, bed_tells: bool = False) -> float | None:
    """:func:`routines.features.first_movement` over events ``[i0, n)``, the day so far. When
    her bed tells when she gets up (``bed_tells``) and she was in bed as the day began, only
    her ``bed_out`` counts: a pet in the hall at 05:00 is not her getting up."""
    kind, ts = tl.kind[i0:n], tl.ts[i0:n]
    if bed_tells:
        j = _bed_word(tl, i0)
        bed_tells = j >= 0 and tl.kind[j] == _BED_IN
    moved = kind == _BED_OUT
    if not bed_tells:
        moved |= (kind == _MOTION) & (tl.room[i0:n] != _BEDROOM)
    up = ts[moved]
    if not len(up):
        return None
    back = ts[kind == _BED_IN]
    if not len(back) or back[-1] < up[0]:
        return float(up[0])
    nxt = np.searchsorted(back, up, side="right")
    ok = (nxt == len(back)) | (back[np.minimum(nxt, len(back) - 1)] - up > BACK_TO_BED_S)
    j = int(np.argmax(ok))
    return float(up[j]) if ok[j] else None


def _slot_of(tl: Timeline, t: float) -> int:
    """The 5-minute slot of her day that ``t`` falls in."""
    start = day_bounds(resident_day(t, tl.zone), tl.zone)[0]
    return min(SLOTS - 1, int((t - start) // STEP_S))


def _label_slots(k: int) -> slice:
    return slice(max(0, k - _LABEL_BEFORE), min(SLOTS, k + _LABEL_AFTER + 1))


@dataclass(slots=True)
class HourlyBaseline:
    """Her usual day, per 5 minutes, from her last 28 days: stillness that would be rare at that
    time of day, the times she is usually in the kitchen (her meals), the time she is usually
    up, how often her front door opens at night, how long she stays in the bathroom; and the
    false alarms a dispatcher labelled, which raise her thresholds where they were raised."""

    quantile: float = 0.95
    margin_s: float = 40 * 60.0
    min_still_s: float = 45 * 60.0
    night_door_rate: float = 0.1
    min_bathroom_s: float = 20 * 60.0
    min_meal_gap_s: float = 1.5 * HOUR
    meal_share: float = 0.5
    """Her meals: the runs of 5-minute slots when she is in the kitchen on at least this share
    of her days..."""
    meal_days: float = 0.9
    """...and in the kitchen at some time in that run on at least this share of them. A meal is
    missed when she has not been in the kitchen since before one began..."""
    meal_lead: int = 8
    """...(at least this many slots, 40 min, before it: a meal taken early is not missed)..."""
    meal_margin_s: float = 45 * 60.0
    """...and it ended this long ago: a meal is late before it is missed."""
    name: str = "baseline"
    prior: Rule = field(default_factory=Rule)
    days: int = 0
    still_max: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, SLOTS)))
    still_at: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(SLOTS))
    meal_from: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    meal_to: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    meal_been: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    meal_gap_at: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(SLOTS))
    up_offsets: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    up_weekend: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    up_by_s: float = 0.0
    up_by_weekday_s: float = 0.0
    up_by_weekend_s: float = 0.0
    up_weekdays: int = 0
    up_weekends: int = 0
    doors_at_night: int = 0
    door_labelled: npt.NDArray[np.bool_] = field(
        default_factory=lambda: np.zeros(SLOTS, dtype=bool)
    )
    bathroom_s: float = 0.0
    bathroom_longest_s: float = 0.0
    labels: int = 0
    bed_days: float = 0.8
    """Her bed tells when she gets up when it says so on at least this share of her days."""
    bed_tells: bool = False
    chair_longest_s: float = 0.0
    pet_rooms: npt.NDArray[np.bool_] = field(
        default_factory=lambda: np.zeros(len(ROOM), dtype=bool)
    )

    def fit(self, history: Timeline, until: float, false_alarms: Sequence[FalseAlarm] = ()) -> None:
        tl = history.before(until)
        days = training_days(tl, until)
        self.days = len(days)
        self.labels = 0
        if self.days < MIN_DAYS:
            return
        still = _stillness(tl, days, None)
        self.still_max = _window_max(still)
        with np.errstate(all="ignore"):
            q = np.nanquantile(self.still_max, self.quantile, axis=0, method="higher")
        self.still_at = np.maximum(
            self.min_still_s, np.nan_to_num(q, nan=24 * HOUR) + self.margin_s
        )
        self._meals(_kitchen_slots(tl, days))
        self.meal_gap_at = np.full(SLOTS, self.min_meal_gap_s)
        bounds = np.array([day_bounds(d, tl.zone) for d in days])
        lo = np.searchsorted(tl.ts, bounds[:, 0], side="left")
        hi = np.searchsorted(tl.ts, bounds[:, 1], side="left")
        outs = np.concatenate(([0], np.cumsum(tl.kind == _BED_OUT)))
        self.bed_tells = bool(np.mean(outs[hi] > outs[lo]) >= self.bed_days)
        self._chair(tl, int(lo[0]), int(hi[-1]))
        self._pets(tl, int(lo[0]), int(hi[-1]), len(days))
        ups = []
        for d, a, b in zip(days, lo.tolist(), hi.tolist(), strict=True):
            up = _up_today(tl, a, b, self.bed_tells)
            ups.append(np.inf if up is None else up - day_bounds(d, tl.zone)[0])
        self.up_offsets = np.array(ups)
        self.up_weekend = np.array([d.weekday() >= WEEKEND for d in days])
        self.up_by_s = self._up_by(self.up_offsets)
        weekday, weekend = self.up_offsets[~self.up_weekend], self.up_offsets[self.up_weekend]
        self.up_weekdays, self.up_weekends = len(weekday), len(weekend)
        self.up_by_weekday_s = self._up_by(weekday) if len(weekday) >= MIN_ALIKE else self.up_by_s
        self.up_by_weekend_s = self._up_by(weekend) if len(weekend) >= MIN_ALIKE else self.up_by_s
        self.doors_at_night = sum(
            _front_door_at_night(tl, at_local(d + timedelta(days=1), 5, tl.zone)) is not None
            for d in days
        )
        self.door_labelled = np.zeros(SLOTS, dtype=bool)
        stays = [
            x.seconds
            for d in days
            for x in dwells(tl, "bathroom", *day_bounds(d, tl.zone))
            if not x.open
        ]
        self.bathroom_longest_s = max(stays, default=0.0)
        q99 = float(np.quantile(stays, 0.99)) if stays else 0.0
        self.bathroom_s = max(self.min_bathroom_s, 1.5 * q99)
        since = day_bounds(days[0], tl.zone)[0]
        for label in false_alarms:
            if since <= label.at < until:
                self._learn(tl, label)

    def _meals(self, kitchen: npt.NDArray[np.int16]) -> None:
        """Her meals from her days' kitchen slots (:func:`_kitchen_slots`): each run of slots
        when she is in the kitchen on at least ``meal_share`` of her days, and on how many days
        she was there at some time in it."""
        usual = np.diff(kitchen, axis=1).mean(axis=0) >= self.meal_share
        edges = np.flatnonzero(np.diff(np.concatenate(([0], usual.astype(np.int8), [0]))))
        self.meal_from, self.meal_to = edges[0::2].astype(np.int64), edges[1::2].astype(np.int64)
        self.meal_been = np.count_nonzero(
            kitchen[:, self.meal_to] > kitchen[:, self.meal_from], axis=0
        ).astype(np.int64)

    def _up_by(self, offsets: npt.NDArray[np.float64]) -> float:
        return float(np.quantile(offsets, self.quantile, method="higher"))

    def _learn(self, tl: Timeline, label: FalseAlarm) -> None:
        """A false alarm labelled by a dispatcher: the situation it was raised on is usual for
        her at that time of day. Stillness as long as that one, carried on, from 30 min before to
        two hours after it, no longer alarms; the meal missed is one she may skip; nor does not
        being up by then, a stay in the bathroom as long, or the front door then."""
        day = resident_day(label.at, tl.zone)
        start = day_bounds(day, tl.zone)[0]
        k = min(SLOTS - 1, int((label.at - start) // STEP_S))
        self.labels += 1
        if label.kind == "inactivity":
            w = _label_slots(k)
            ends = start + STEP_S * (np.arange(w.start, w.stop) + 1)
            usual = np.maximum(0.0, ends - label.start)
            self.still_at[w] = np.maximum(self.still_at[w], usual + self.margin_s)
        elif label.kind == "missed_meal":
            # The meal it was raised on (begun after her last visit, over before the alarm) is
            # one she may skip: it is no longer judged.
            begun = start + STEP_S * self.meal_from >= label.start
            over = start + STEP_S * self.meal_to <= label.at - self.meal_margin_s + STEP_S
            missed = np.flatnonzero(begun & over)
            if len(missed):
                self.meal_been[missed[-1]] = 0
        elif label.kind == "not_up":
            late = label.at - start
            if day.weekday() >= WEEKEND:
                self.up_by_weekend_s = max(self.up_by_weekend_s, late)
            else:
                self.up_by_weekday_s = max(self.up_by_weekday_s, late)
        elif label.kind == "long_bathroom":
            self.bathroom_s = max(self.bathroom_s, label.at - label.start + self.min_bathroom_s)
        elif label.kind == "night_wandering":
            self.door_labelled[_label_slots(_slot_of(tl, label.start))] = True

    def score(self, tl: Timeline, now: float) -> list[Detection]:
        if self.days < MIN_DAYS:
            return self.prior.score(tl, now)
        n = tl.index(now)
        at = local(now, tl.zone)
        day = at.date() - timedelta(days=1) if at.hour < DAY_START_H else at.date()
        start = at_local(day, DAY_START_H, tl.zone)
        k = min(SLOTS - 1, int((now - start) // STEP_S))
        i0 = int(np.searchsorted(tl.ts, start, side="left"))
        out: list[Detection] = []
        up = _up_today(tl, i0, n, self.bed_tells)
        gone = _out(tl, n) or (bool(self.pet_rooms.any()) and self._left(tl, n, now))
        if up is None:
            weekend = day.weekday() >= WEEKEND
            up_by = self.up_by_weekend_s if weekend else self.up_by_weekday_s
            if now - start > up_by + self.margin_s and not gone:
                out.append(self._not_up(tl, now, start + up_by, up_by, weekend))
        elif n:
            last = float(tl.ts[n - 1])
            s = now - last
            if s >= self.still_at[k] and not gone and not self._in_bed(tl, n):
                chair = self._in_chair(tl, n)
                if not chair or s >= self.chair_longest_s + self.margin_s:
                    shorter = int(np.sum(self.still_max[:, k] < s))
                    told = (
                        f"; she sat down in her chair then, and her longest nap there in"
                        f" {self.days} days was {duration(self.chair_longest_s)}"
                        if chair
                        else ""
                    )
                    out.append(
                        Detection(
                            "inactivity",
                            last,
                            f"no movement since {hhmm(last, tl)} ({duration(s)}); on {shorter}"
                            f" of the last {self.days} days she moved within {duration(s)} at"
                            f" this time of day{told}",
                        )
                    )
            meal = self._missed_meal(tl, now, start, k, i0, n, gone)
            if meal is not None:
                out.append(meal)
        if at.hour < NIGHT_TO_H:
            door = self._door(tl, now, start, n)
            if door is not None:
                out.append(door)
        if n and tl.room[n - 1] == _BATHROOM:
            lo = int(np.searchsorted(tl.ts, max(start, now - 6 * HOUR), side="left"))
            room = tl.room
            j = _rfind(tl, lo, n, lambda s: room[s] != _BATHROOM)
            if j + 1 < n:
                began = float(tl.ts[max(j + 1, lo)])
                if now - began >= self.bathroom_s:
                    out.append(
                        Detection(
                            "long_bathroom",
                            began,
                            f"in the bathroom since {hhmm(began, tl)} ({duration(now - began)});"
                            f" her longest stay in {self.days} days was"
                            f" {duration(self.bathroom_longest_s)}",
                        )
                    )
        return out

    def _chair(self, tl: Timeline, lo: int, hi: int) -> None:
        """Her longest stillness from sitting down in her chair (a ``chair_in``, then no event
        at all) over events ``[lo, hi)``: a nap in the chair, where no PIR sees her."""
        kind, ts = tl.kind[lo:hi], tl.ts[lo:hi]
        sat = np.flatnonzero(kind[:-1] == _CHAIR_IN)
        self.chair_longest_s = float(np.max(ts[sat + 1] - ts[sat])) if len(sat) else 0.0

    def _pets(self, tl: Timeline, lo: int, hi: int, nights: int) -> None:
        """The rooms whose PIRs fire while she is in bed, on average once a night or more: a pet
        (or someone else) there, whose motion is not hers."""
        kind, room = tl.kind[lo:hi], tl.room[lo:hi]
        words = np.flatnonzero((kind == _BED_IN) | (kind == _BED_OUT))
        last = np.searchsorted(words, np.arange(len(kind)), side="right") - 1
        in_bed = (last >= 0) & (kind[words[np.maximum(last, 0)]] == _BED_IN)
        seen = room[in_bed & (kind == _MOTION) & (room != _BEDROOM)].astype(np.int64)
        self.pet_rooms = np.bincount(seen, minlength=len(ROOM)) >= max(1, nights)

    def _left(self, tl: Timeline, n: int, now: float) -> bool:
        """In a home with a pet: her last event not the pet's was the front door, and no motion
        in the hall in the minute after it closed: she went out (the pet stays)."""
        kind, room, pets = tl.kind, tl.room, self.pet_rooms
        j = _rfind(tl, 0, n, lambda s: (kind[s] != _MOTION) | ~pets[room[s]])
        if j < 0 or room[j] != _HALL or kind[j] not in (_DOOR_OPEN, _DOOR_CLOSED):
            return False
        shut = float(tl.ts[j])
        if now < shut + _LEAVING_S:
            return False
        s = tl.span(float(np.nextafter(shut, np.inf)), shut + _LEAVING_S)
        return not np.any((room[s] == _HALL) & (kind[s] == _MOTION))

    def _in_chair(self, tl: Timeline, n: int) -> bool:
        """Her last event was sitting down in her chair: she has not stirred since."""
        return bool(n) and tl.kind[n - 1] == _CHAIR_IN

    def _in_bed(self, tl: Timeline, n: int) -> bool:
        """The bed sensor's last word was that she got in: her stillness is sleep or rest."""
        j = _bed_word(tl, n)
        return j >= 0 and tl.kind[j] == _BED_IN

    def _not_up(
        self, tl: Timeline, now: float, usual: float, up_by: float, weekend: bool
    ) -> Detection:
        alike = self.up_offsets[self.up_weekend == weekend]
        ups = alike if len(alike) >= MIN_ALIKE else self.up_offsets
        by = int(np.sum(ups <= up_by))
        days = f"{'weekend ' if ups is alike and weekend else ''}days"
        return Detection(
            "not_up",
            usual,
            f"not up by {hhmm(now, tl)}; on {by} of the last {len(ups)} {days}"
            f" she was up by {hhmm(usual, tl)}",
        )

    def _missed_meal(
        self, tl: Timeline, now: float, start: float, k: int, i0: int, n: int, gone: bool
    ) -> Detection | None:
        """No kitchen since her last visit today, through a time she is nearly always in the
        kitchen (a meal), with a margin: a missed meal. Not while she is out or in bed, nor
        when she went out since (she may have eaten out); before her first visit of the day a
        late morning is not_up's."""
        room = tl.room
        j = -1 if gone else _rfind(tl, i0, n, lambda s: room[s] == _KITCHEN)
        kitchen = float(tl.ts[j]) if j >= 0 else now
        if now - kitchen < self.meal_gap_at[k]:
            return None
        a = min(SLOTS - 1, int((kitchen - start) // STEP_S)) + 1
        b = int((now - self.meal_margin_s - start) // STEP_S)
        missed = np.flatnonzero(
            (self.meal_from >= a + self.meal_lead)
            & (self.meal_to <= b)
            & (self.meal_been >= self.meal_days * self.days)
        )
        if not len(missed):
            return None
        m = int(missed[-1])
        been, lo, hi = int(self.meal_been[m]), int(self.meal_from[m]), int(self.meal_to[m])
        out = (tl.kind[j:n] == _DOOR_OPEN) & (room[j:n] == _HALL)
        if np.any(out) or self._in_bed(tl, n):
            return None
        return Detection(
            "missed_meal",
            kitchen,
            f"no kitchen motion since {hhmm(kitchen, tl)}; on {been} of the last {self.days}"
            f" days she was in the kitchen between {hhmm(start + lo * STEP_S, tl)} and"
            f" {hhmm(start + hi * STEP_S, tl)}",
        )

    def _door(self, tl: Timeline, now: float, start: float, n: int) -> Detection | None:
        """The front door between 00:00 and 05:00, when it rarely opens at night for her; not
        when her bed's last word before it was getting up before 18:00 the evening before: she
        has not been to bed since the day, and a door opening then is someone coming to her (help
        after a fall the inactivity alarm told), not her wandering out of bed."""
        door = _front_door_at_night(tl, now)
        if door is None or self.doors_at_night >= self.night_door_rate * self.days:
            return None
        if self.door_labelled[_slot_of(tl, door)]:
            return None
        evening = at_local(local(door, tl.zone).date() - timedelta(days=1), 18, tl.zone)
        d = tl.index(door)
        j = _bed_word(tl, d)
        if j >= 0 and tl.kind[j] == _BED_OUT and tl.ts[j] < evening:
            return None  # out of bed since the day before, not in bed since: not her going out
        return Detection(
            "night_wandering",
            door,
            f"front door opened at {hhmm(door, tl)}; it opened between 00:00 and"
            f" 05:00 on {self.doors_at_night} of the last {self.days} nights",
        )


# ---------------------------------------------------------------- day windows by LOF

FEATURES = (
    "bedroom events", "bathroom events", "kitchen events", "lounge events", "hall events",
    "hours up", "hours still", "hours in the bathroom", "hours in the kitchen",
    "night events", "night front-door openings",
)  # fmt: skip
FIRST_CUT_H = 6
LAST_CUT_H = 23
STILL = FEATURES.index("hours still")
UP = FEATURES.index("hours up")


@dataclass(slots=True)
class _Cut:
    mean: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    lof: object


@dataclass(slots=True)
class DayWindowLOF:
    """Her day so far against the same hour of her last 28 days, by Local Outlier Factor over
    the day-window features: a day unlike her days (far less activity, a long stillness, a late
    morning, a night out of bed)."""

    outlier_factor: float = 3.0
    neighbours: int = 10
    name: str = "lof"
    prior: Rule = field(default_factory=Rule)
    days: int = 0
    cuts: dict[int, _Cut] = field(default_factory=dict)

    def fit(self, history: Timeline, until: float, false_alarms: Sequence[FalseAlarm] = ()) -> None:
        """Labelled false alarms are not used: its alarms are for care review."""
        from sklearn.neighbors import LocalOutlierFactor

        tl = history.before(until)
        days = training_days(tl, until)
        self.days = len(days)
        self.cuts = {}
        if self.days < MIN_DAYS:
            return
        for h in range(FIRST_CUT_H, LAST_CUT_H + 1):
            x = np.array([day_window(tl, d, at_local(d, h, tl.zone)) for d in days])
            mean = x.mean(axis=0)
            scale = np.maximum(x.std(axis=0), 0.5)
            lof = LocalOutlierFactor(n_neighbors=min(self.neighbours, len(days) - 1), novelty=True)
            # Days alike to the minute make the local density infinite: a little seeded noise
            # (a twentieth of a spread) keeps their neighbourhood a neighbourhood.
            jitter = np.random.default_rng(h).normal(0.0, 0.05, x.shape)
            lof.fit((x - mean) / scale + jitter)
            self.cuts[h] = _Cut(mean, scale, lof)

    def score(self, tl: Timeline, now: float) -> list[Detection]:
        if self.days < MIN_DAYS:
            return self.prior.score(tl, now)
        day, _, _ = _slot(tl, now)
        h = local(now, tl.zone).hour
        cut = self.cuts.get(h)
        then = at_local(day, h, tl.zone)
        if cut is None or then > now:
            return []
        # Judged at the hour, as her past days were: between hours the answer stands.
        n = tl.index(then)
        if _out(tl, n):
            return []
        return self._judge(tl, cut, day, then, n)

    def _judge(self, tl: Timeline, cut: _Cut, day: date, then: float, n: int) -> list[Detection]:
        start = day_bounds(day, tl.zone)[0]
        x = day_window(tl, day, then)
        z = (x - cut.mean) / cut.scale
        factor = -float(cut.lof.score_samples(z[None, :])[0])  # type: ignore[attr-defined]
        if factor < self.outlier_factor:
            return []
        worst = np.argsort(-np.abs(z))[:2]
        told = "; ".join(
            f"{FEATURES[i]} {x[i]:.1f} (usual {cut.mean[i]:.1f})" for i in worst.tolist()
        )
        why = (
            f"today to {hhmm(then, tl)} is unlike her last {self.days} days"
            f" (outlier factor {factor:.1f}): {told}"
        )
        last = _last(tl, n, None)
        if worst[0] == STILL and z[STILL] > 0 and last is not None:
            return [Detection("inactivity", last, why)]
        if worst[0] == UP and x[UP] == 0.0:
            return [Detection("not_up", start, why)]
        return [Detection("unusual_day", start, why)]
