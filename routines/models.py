"""Models of a resident's routine, each learnt from her own past days, each saying when now is
not like them and why, in words a person can act on.

Three families, one shape (:class:`RoutineModel`): ``fit(history, until)`` learns from the events
strictly before ``until`` (never the day it will score), and ``score(timeline, now)`` reads the
events at or before ``now`` and returns :class:`Detection` s (kind, a start estimate, an
explanation). ``score`` is pure and stateless, so it can run every few minutes when nothing
arrives: silence is the signal.

- :class:`Rule`: fixed thresholds, the telecare vocabulary (no movement for 4 h in the day, not up
  by 10:00, front door between 00:00 and 05:00, an hour in the bathroom, no kitchen by 13:00).
- :class:`HourlyBaseline`: per 5 minutes of her day, how long she is usually still (and how long
  since the kitchen), when she usually gets up, how often the front door opens at night and how
  long she stays in the bathroom; now is anomalous when it would be rare for that time of day
  over her last 28 days.
- :class:`DayWindowLOF`: the day so far as a vector (:func:`routines.features.day_window`)
  against the same hour of her past days, by Local Outlier Factor: days unlike her days (less
  activity over days, a late morning, a drift) for care review.

A home with fewer than :data:`MIN_DAYS` days of history is judged against a population prior
(the rule's thresholds) until it has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from routines.features import (
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


@dataclass(slots=True)
class HourlyBaseline:
    """Her usual day, per 5 minutes, from her last 28 days: stillness (and time since the
    kitchen) that would be rare at that time of day, the time she is usually up, how often her
    front door opens at night, how long she stays in the bathroom."""

    quantile: float = 0.95
    margin_s: float = 40 * 60.0
    min_still_s: float = 45 * 60.0
    night_door_rate: float = 0.1
    min_bathroom_s: float = 20 * 60.0
    min_kitchen_s: float = 4 * HOUR
    kitchen_margin_s: float = 30 * 60.0
    """A meal is missed later than a movement is: her kitchen gaps vary more."""
    name: str = "baseline"
    prior: Rule = field(default_factory=Rule)
    days: int = 0
    p_move: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(24))
    still_max: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, SLOTS)))
    still_at: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(SLOTS))
    kitchen_max: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, SLOTS)))
    kitchen_at: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(SLOTS))
    up_offsets: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    up_weekend: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    up_by_s: float = 0.0
    doors_at_night: int = 0
    bathroom_s: float = 0.0
    bathroom_longest_s: float = 0.0

    def fit(self, history: Timeline, until: float, false_alarms: Sequence[FalseAlarm] = ()) -> None:
        tl = history.before(until)
        days = training_days(tl, until)
        self.days = len(days)
        if self.days < MIN_DAYS:
            return
        still = _stillness(tl, days, None)
        self.p_move = np.array(
            [np.mean(np.nanmin(still[:, h * 12 : h * 12 + 12], axis=1) < STEP_S) for h in range(24)]
        )
        self.still_max = _window_max(still)
        self.still_at = self._threshold(self.still_max)
        self.kitchen_max = _window_max(_stillness(tl, days, "kitchen"))
        self.kitchen_at = np.maximum(
            self.min_kitchen_s, self._threshold(self.kitchen_max) + self.kitchen_margin_s
        )
        ups = []
        for d in days:
            up = first_movement(tl, d)
            ups.append(np.inf if up is None else up - day_bounds(d, tl.zone)[0])
        self.up_offsets = np.array(ups)
        self.up_weekend = np.array([d.weekday() >= WEEKEND for d in days])
        self.up_by_s = float(np.quantile(self.up_offsets, self.quantile, method="higher"))
        self.doors_at_night = sum(
            _front_door_at_night(tl, at_local(d + timedelta(days=1), 5, tl.zone)) is not None
            for d in days
        )
        stays = [
            x.seconds
            for d in days
            for x in dwells(tl, "bathroom", *day_bounds(d, tl.zone))
            if not x.open
        ]
        self.bathroom_longest_s = max(stays, default=0.0)
        q = float(np.quantile(stays, 0.99)) if stays else 0.0
        self.bathroom_s = max(self.min_bathroom_s, 1.5 * q)

    def _threshold(self, m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        with np.errstate(all="ignore"):
            q = np.nanquantile(m, self.quantile, axis=0, method="higher")
        return np.maximum(self.min_still_s, np.nan_to_num(q, nan=24 * HOUR) + self.margin_s)

    def score(self, tl: Timeline, now: float) -> list[Detection]:
        if self.days < MIN_DAYS:
            return self.prior.score(tl, now)
        n = tl.index(now)
        day, start, k = _slot(tl, now)
        out: list[Detection] = []
        up = first_movement(tl, day, now)
        gone = _out(tl, n)
        resting = gone or _in_bed(tl, n)
        # Weekends start later: her up-time on days like today, when she has enough of them.
        alike = self.up_offsets[self.up_weekend == (day.weekday() >= WEEKEND)]
        ups = alike if len(alike) >= MIN_ALIKE else self.up_offsets
        up_by = float(np.quantile(ups, self.quantile, method="higher"))
        if up is None and now - start > up_by + self.margin_s and not gone:
            usual = start + up_by
            by = int(np.sum(ups <= up_by))
            days = f"{'weekend ' if ups is alike and day.weekday() >= WEEKEND else ''}days"
            out.append(
                Detection(
                    "not_up",
                    usual,
                    f"not up by {hhmm(now, tl)}; on {by} of the last {len(ups)} {days}"
                    f" she was up by {hhmm(usual, tl)}",
                )
            )
        last = _last(tl, n, None)
        if up is not None and last is not None and not resting:
            s = now - last
            if s >= self.still_at[k]:
                shorter = int(np.sum(self.still_max[:, k] < s))
                out.append(
                    Detection(
                        "inactivity",
                        last,
                        f"no movement since {hhmm(last, tl)} ({duration(s)}); on {shorter} of"
                        f" the last {self.days} days she moved within {duration(s)} at this"
                        " time of day",
                    )
                )
        kitchen = _last(tl, n, ROOM["kitchen"])
        # A meal missed after her first kitchen visit of the day; a late morning is not_up's.
        if up is not None and kitchen is not None and kitchen >= start and not resting:
            s = now - kitchen
            if s >= self.kitchen_at[k]:
                shorter = int(np.sum(self.kitchen_max[:, k] < s))
                out.append(
                    Detection(
                        "missed_meal",
                        kitchen,
                        f"no kitchen motion since {hhmm(kitchen, tl)}; on {shorter} of the"
                        f" last {self.days} days she was in the kitchen within {duration(s)}"
                        " at this time of day",
                    )
                )
        door = _front_door_at_night(tl, now)
        if door is not None and self.doors_at_night < self.night_door_rate * self.days:
            out.append(
                Detection(
                    "night_wandering",
                    door,
                    f"front door opened at {hhmm(door, tl)}; it opened between 00:00 and"
                    f" 05:00 on {self.doors_at_night} of the last {self.days} nights",
                )
            )
        for d in dwells(tl, "bathroom", max(start, now - 6 * HOUR), now)[-1:]:
            if d.open and d.seconds >= self.bathroom_s:
                out.append(
                    Detection(
                        "long_bathroom",
                        d.start,
                        f"in the bathroom since {hhmm(d.start, tl)} ({duration(d.seconds)});"
                        f" her longest stay in {self.days} days was"
                        f" {duration(self.bathroom_longest_s)}",
                    )
                )
        return out


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
