"""The nouns of dispatch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    """A caregiver as the live index sees her."""

    caregiver_id: str
    agency_id: str
    lat: float
    lon: float
    ts: float
    status: str


@dataclass(frozen=True, slots=True)
class Ranked:
    """An eligible candidate with her distance and ETA to the patient."""

    candidate: Candidate
    distance_m: float
    eta_s: float


@dataclass(frozen=True, slots=True)
class PlannedOffer:
    caregiver_id: str
    wave: int
    distance_m: float
    eta_s: float
    expires_at: float
