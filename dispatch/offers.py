"""Offer waves: who is asked next, and when to stop asking and escalate."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

from dispatch.model import PlannedOffer, Ranked

SEVERITY = {"fall": 1, "sos": 1, "dispenser_tamper": 2, "dose_missed": 3}
EMERGENCY_KINDS = frozenset({"fall", "sos"})
JOIN_WINDOW_S = 600.0  # a trigger from the same home this soon joins its waiting incident
ESCALATE_AFTER_S = 40.0  # without an acceptance this long after opening, a person is told


def severity_of(kind: str) -> int:
    """1 is the most urgent."""
    return SEVERITY.get(kind, 3)


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
