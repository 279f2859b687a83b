"""Offer waves: who is asked next, how long each offer stands, and when to stop asking and
escalate."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from dispatch.model import PlannedOffer, Ranked

SEVERITY = {
    "fall": 1,
    "sos": 1,
    "dispenser_tamper": 2,
    "dose_missed": 3,
    # opened from a routine alarm: she may be on the floor, unheard
    "inactivity": 2,
    "not_up": 2,
    "long_bathroom": 2,
    "night_wandering": 2,
}
SEVERITIES = (1, 2, 3)  # 1 is the most urgent
CRITICAL = 1
EMERGENCY_KINDS = frozenset({"fall", "sos"})
JOIN_WINDOW_S = 600.0  # a trigger from the same home this soon joins its waiting incident
ESCALATE_AFTER_S = 40.0  # without an acceptance this long after opening, a person is told
DEFAULT_WINDOW_S = 45.0  # an offer's window where its severity has none of its own
WINDOWS_S: Mapping[int, float] = {CRITICAL: 20.0}  # falls and SOS: shorter waves
STALLED_AFTER_S = 2.0  # waiting this long with no offer out and no answer: a worker dropped it


def severity_of(kind: str) -> int:
    """1 is the most urgent."""
    return SEVERITY.get(kind, 3)


@dataclass(frozen=True, slots=True)
class OfferTiming:
    """How long an offer stands, and when a person is told, by the incident's severity.

    An incident escalates after ``max_waves`` waves or ``after_s`` seconds without an
    acceptance, whichever comes first. The waves of a severity last at most ``max_waves``
    windows, so the time rule never waits longer than that: a shorter window brings
    escalation forward, a longer one never puts it off beyond ``after_s``.
    """

    windows_s: Mapping[int, float] = field(default_factory=lambda: dict(WINDOWS_S))
    default_window_s: float = DEFAULT_WINDOW_S
    max_waves: int = 3

    def window_s(self, severity: int) -> float:
        return self.windows_s.get(severity, self.default_window_s)

    def escalate_after_s(self, severity: int, after_s: float) -> float:
        """Seconds after opening when an incident of this severity is escalated by time."""
        return min(after_s, max(self.max_waves, 0) * self.window_s(severity))

    def opened_before(self, now: float, after_s: float) -> dict[int, float]:
        """Per severity, incidents opened before this time are due for escalation."""
        return {sev: now - self.escalate_after_s(sev, after_s) for sev in SEVERITIES}


def plan_wave(
    ranked: Sequence[Ranked],
    *,
    already_offered: Collection[str],
    wave: int,
    wave_size: int,
    now: float,
    window_s: float,
) -> list[PlannedOffer]:
    """The next ``wave_size`` best candidates not yet asked about this incident."""
    fresh = [r for r in ranked if r.candidate.caregiver_id not in already_offered]
    return [
        PlannedOffer(r.candidate.caregiver_id, wave, r.distance_m, r.eta_s, now + window_s)
        for r in fresh[:wave_size]
    ]


def next_step(
    *, wave: int, max_waves: int, planned: Sequence[PlannedOffer]
) -> Literal["offer", "escalate"]:
    """After a wave closes without an acceptance: offer again, or hand to a person."""
    if wave > max_waves or not planned:
        return "escalate"
    return "offer"
