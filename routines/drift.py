"""Drift over days, for care review (not an alarm): her last 7 days against the 21 before them,
in how much she moves about a day, how long she spends in bed and how active her nights are.
A slow change (an illness coming on, a decline, a new medicine that keeps her up at night) is
unlike any one moment and shows only over days.

Pure and cheap: a few array passes over a home's last 28 days of events. Days with no event at
all (an empty house, away in hospital) tell nothing of her and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt

from routines.features import (
    KIND,
    ROOM,
    Timeline,
    day_bounds,
    night_bounds,
    resident_day,
)

RECENT_DAYS = 7
BEFORE_DAYS = 21
MIN_BEFORE = 14
"""Fewer usual days than this before the recent week, and nothing is said."""
HOUR = 3600.0

Measure = Literal["activity", "time_in_bed", "night_activity"]


@dataclass(frozen=True, slots=True)
class Drift:
    """One measure of her days that moved: its mean over the recent days and over the days
    before, and what to tell her carers."""

    measure: Measure
    recent: float
    usual: float
    explanation: str


@dataclass(frozen=True, slots=True)
class Thresholds:
    activity: float = 0.2
    """A change in events a day of at least this share of her usual..."""
    activity_z: float = 2.5
    """...and this many of her usual days' spread (over the week's mean)."""
    bed_h: float = 1.0
    """A change in hours in bed a day of at least this..."""
    bed_z: float = 2.5
    night_events: float = 10.0
    """More events out of the bedroom at night than her usual by at least this many..."""
    night_ratio: float = 2.0
    """...and this many times her usual."""


@dataclass(frozen=True, slots=True)
class Days:
    """Per day measures of her days (the days with any event), oldest first."""

    days: list[date]
    activity: npt.NDArray[np.float64]
    time_in_bed_h: npt.NDArray[np.float64]
    night_events: npt.NDArray[np.float64]


def _in_bed_intervals(tl: Timeline, lo: float, hi: float) -> npt.NDArray[np.float64]:
    """Her spells in bed overlapping ``[lo, hi)``, as rows (from, to): each ``bed_in`` to the
    next ``bed_out`` (or ``hi``)."""
    s = tl.span(lo - 24 * HOUR, hi)
    kind, ts = tl.kind[s], tl.ts[s]
    bed = (kind == KIND["bed_in"]) | (kind == KIND["bed_out"])
    k, t = kind[bed], ts[bed]
    if not len(k):
        return np.zeros((0, 2))
    starts = np.flatnonzero(k == KIND["bed_in"])
    outs = np.flatnonzero(k == KIND["bed_out"])
    nxt = np.searchsorted(outs, starts, side="right")
    ends = np.where(nxt < len(outs), t[outs[np.minimum(nxt, len(outs) - 1)]], hi)
    spells = np.stack([t[starts], ends], axis=1)
    # A bed_in repeated before her bed_out (a sensor's double word) is one spell: keep the first.
    if len(spells) > 1:
        keep = np.concatenate(([True], spells[1:, 1] != spells[:-1, 1]))
        spells = spells[keep]
    clipped: npt.NDArray[np.float64] = np.clip(spells, lo, hi)
    return clipped


def per_day(tl: Timeline, until: float, days: int = RECENT_DAYS + BEFORE_DAYS) -> Days:
    """Her last ``days`` complete resident days before ``until`` with any event: events a day,
    hours in bed, events out of the bedroom in the night before each day (23:00-06:00)."""
    last = resident_day(until, tl.zone) - timedelta(days=1)
    if day_bounds(last, tl.zone)[1] > until:
        last -= timedelta(days=1)
    candidates = [last - timedelta(days=i) for i in range(days - 1, -1, -1)]
    bounds = np.array([day_bounds(d, tl.zone) for d in candidates])
    lo_idx = np.searchsorted(tl.ts, bounds[:, 0], side="left")
    hi_idx = np.searchsorted(tl.ts, bounds[:, 1], side="left")
    counts = (hi_idx - lo_idx).astype(np.float64)
    lived = counts > 0
    spells = _in_bed_intervals(tl, float(bounds[0, 0]), float(bounds[-1, 1]))
    in_bed = np.zeros(len(candidates))
    if len(spells):
        a = np.maximum(spells[None, :, 0], bounds[:, 0:1])
        b = np.minimum(spells[None, :, 1], bounds[:, 1:2])
        in_bed = np.clip(b - a, 0.0, None).sum(axis=1) / HOUR
    nights = np.array([night_bounds(d, tl.zone) for d in candidates])
    out_of_bedroom = np.flatnonzero(tl.room != ROOM["bedroom"])
    out_ts = tl.ts[out_of_bedroom]
    night = (
        np.searchsorted(out_ts, nights[:, 1], side="left")
        - np.searchsorted(out_ts, nights[:, 0], side="left")
    ).astype(np.float64)
    return Days(
        [d for d, ok in zip(candidates, lived.tolist(), strict=True) if ok],
        counts[lived],
        in_bed[lived],
        night[lived],
    )


def _spread(x: npt.NDArray[np.float64], floor: float) -> float:
    return max(float(np.std(x, ddof=1)) if len(x) > 1 else 0.0, floor)


def drift(tl: Timeline, until: float, t: Thresholds | None = None) -> list[Drift]:
    """Her last 7 days before ``until`` against the 21 before them: the measures that moved,
    each explained; nothing when she has too few days."""
    t = t or Thresholds()
    d = per_day(tl, until)
    last = resident_day(until, tl.zone) - timedelta(days=1)
    recent = np.array([day > last - timedelta(days=RECENT_DAYS) for day in d.days], dtype=bool)
    if recent.sum() < RECENT_DAYS - 2 or (~recent).sum() < MIN_BEFORE:
        return []
    out: list[Drift] = []
    now_a, was_a = d.activity[recent], d.activity[~recent]
    mean_now, mean_was = float(now_a.mean()), float(was_a.mean())
    change = (mean_now - mean_was) / max(mean_was, 1.0)
    sd = _spread(was_a, 0.05 * mean_was) / np.sqrt(len(now_a))
    if abs(change) >= t.activity and abs(mean_now - mean_was) >= t.activity_z * sd:
        word = "less" if change < 0 else "more"
        out.append(
            Drift(
                "activity",
                mean_now,
                mean_was,
                f"active {abs(change):.0%} {word} than her usual over the last {len(now_a)} days"
                f" ({mean_now:.0f} sensor events a day against {mean_was:.0f})",
            )
        )
    now_b, was_b = d.time_in_bed_h[recent], d.time_in_bed_h[~recent]
    bed_now, bed_was = float(now_b.mean()), float(was_b.mean())
    sd_b = _spread(was_b, 0.25) / np.sqrt(len(now_b))
    if abs(bed_now - bed_was) >= t.bed_h and abs(bed_now - bed_was) >= t.bed_z * sd_b:
        word = "more" if bed_now > bed_was else "less"
        out.append(
            Drift(
                "time_in_bed",
                bed_now,
                bed_was,
                f"in bed {abs(bed_now - bed_was):.1f} h a day {word} than her usual over the last"
                f" {len(now_b)} days ({bed_now:.1f} h against {bed_was:.1f} h)",
            )
        )
    now_n, was_n = d.night_events[recent], d.night_events[~recent]
    night_now, night_was = float(now_n.mean()), float(was_n.mean())
    if night_now - night_was >= t.night_events and night_now >= t.night_ratio * max(night_was, 1):
        out.append(
            Drift(
                "night_activity",
                night_now,
                night_was,
                f"up at night more than her usual over the last {len(now_n)} days"
                f" ({night_now:.0f} events out of the bedroom between 23:00 and 06:00 a night,"
                f" against {night_was:.0f})",
            )
        )
    return out
