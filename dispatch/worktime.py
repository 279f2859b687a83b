"""UK Working Time Regulations, as far as dispatch needs them. Pure; time is an argument.

Two limits decide whether taking an emergency now keeps a caregiver within the law:

- the **48-hour week**, averaged over a 17-week reference period: the hours worked in the 17
  weeks ending when the response would end, the response included, are at most 48 x 17;
- **11 hours' daily rest**: the 24 hours ending when the response would end hold at least 11
  consecutive hours without work.

Periods are half-open ``[start, end)`` in epoch seconds; overlapping periods count once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HOUR_S = 3600.0
WEEK_S = 7 * 24 * HOUR_S
REFERENCE_WEEKS = 17
REFERENCE_S = REFERENCE_WEEKS * WEEK_S
WEEKLY_LIMIT_S = 48 * HOUR_S
DAY_S = 24 * HOUR_S
DAILY_REST_S = 11 * HOUR_S
RESPONSE_S = 1 * HOUR_S  # how long an emergency response is assumed to take


@dataclass(frozen=True, slots=True)
class Period:
    """Time at work (or on shift), ``[start, end)`` in epoch seconds."""

    start: float
    end: float


def merged(periods: Iterable[Period], start: float, end: float) -> list[Period]:
    """The periods clipped to ``[start, end)``, overlaps merged, in order."""
    clipped = sorted(
        (max(p.start, start), min(p.end, end)) for p in periods if p.end > start and p.start < end
    )
    out: list[Period] = []
    for s, e in clipped:
        if e <= s:
            continue
        if out and s <= out[-1].end:
            out[-1] = Period(out[-1].start, max(out[-1].end, e))
        else:
            out.append(Period(s, e))
    return out


def worked_s(periods: Iterable[Period], start: float, end: float) -> float:
    """Seconds of work within ``[start, end)``."""
    return sum(p.end - p.start for p in merged(periods, start, end))


def longest_rest_s(periods: Iterable[Period], start: float, end: float) -> float:
    """The longest stretch without work within ``[start, end)``."""
    longest, edge = 0.0, start
    for p in merged(periods, start, end):
        longest = max(longest, p.start - edge)
        edge = p.end
    return max(longest, end - edge)


def with_response(worked: Sequence[Period], now: float, response_s: float) -> list[Period]:
    return [*worked, Period(now, now + response_s)]


def weekly_average_ok(worked: Sequence[Period], now: float, response_s: float = RESPONSE_S) -> bool:
    """Within 48 hours a week on average over the 17 weeks ending with the response."""
    end = now + response_s
    total = worked_s(with_response(worked, now, response_s), end - REFERENCE_S, end)
    return total <= WEEKLY_LIMIT_S * REFERENCE_WEEKS


def daily_rest_ok(worked: Sequence[Period], now: float, response_s: float = RESPONSE_S) -> bool:
    """11 consecutive hours of rest in the 24 hours ending with the response."""
    end = now + response_s
    return longest_rest_s(with_response(worked, now, response_s), end - DAY_S, end) >= DAILY_REST_S
