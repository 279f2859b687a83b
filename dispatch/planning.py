"""Offer planning: whom the next wave of an incident asks, or that the incident escalates.

The dispatcher reads (the incident, its candidates ranked nearest ETA first, whom the roster
rules out and why, who was already asked) and :func:`plan_offers` decides; the dispatcher then
records the wave, or the escalation. No I/O, no clock: ``now`` is passed in.

A wave asks the ``wave_size`` best-ranked candidates who may take the incident and were never
asked about it, each once, for the window of the incident's severity. Instead of a wave, the
incident escalates (with no offers):

- ``no_candidates``: no one is left to ask;
- ``no_acceptance``: its waves ran out (``OfferTiming.max_waves``) without an acceptance.

An escalated incident is never parked: a person is told, and its waves go on, larger
(:func:`wave_size_of`), until someone accepts or a person takes it over; with no one left to ask
now, its plan is empty and the offer timer looks again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from dispatch.model import PlannedOffer, Ranked
from dispatch.offers import OfferTiming, next_step, plan_wave

Escalation = Literal["no_candidates", "no_acceptance"]


class Incident(Protocol):
    """What planning needs of an incident."""

    @property
    def severity(self) -> int:
        """1 is the most urgent; it sets how long an offer stands."""
        ...

    @property
    def wave(self) -> int:
        """Waves made so far (0 before the first)."""
        ...

    @property
    def state(self) -> str:
        """``escalated`` once a person was told; the rest planning does not read."""
        ...


@dataclass(frozen=True, slots=True)
class OfferPlan:
    """The decision for an incident's next wave: its offers, or why it escalates instead."""

    wave: int
    offers: tuple[PlannedOffer, ...] = ()
    escalation: Escalation | None = None


def askable(
    candidates: Sequence[Ranked], *, offered: Collection[str], ineligible: Mapping[str, str]
) -> list[Ranked]:
    """Those who may be asked, in rank order: not ruled out, never asked about the incident,
    and each caregiver once."""
    skip = {*offered, *ineligible}
    out = []
    for r in candidates:
        cid = r.candidate.caregiver_id
        if cid not in skip:
            skip.add(cid)
            out.append(r)
    return out


ESCALATED_GROWTH = (2, 4)
"""An escalated incident's waves: twice the size, then four times."""


def wave_size_of(incident: Incident, wave_size: int, max_waves: int) -> int:
    """How many the incident's next wave asks: ``wave_size``, larger once it escalated."""
    if incident.state != "escalated":
        return wave_size
    beyond = incident.wave + 1 - max_waves
    return wave_size * ESCALATED_GROWTH[min(max(beyond, 1), len(ESCALATED_GROWTH)) - 1]


def plan_offers(
    incident: Incident,
    candidates: Sequence[Ranked],
    *,
    offered: Collection[str],
    ineligible: Mapping[str, str],
    timing: OfferTiming,
    wave_size: int,
    now: float,
) -> OfferPlan:
    """The incident's next wave: the first ``wave_size`` (:func:`wave_size_of`) of
    :func:`askable`, each offer standing for its severity's window from ``now``; or the
    escalation when none is left to ask or the waves ran out (``ineligible`` maps a caregiver
    the roster rules out to the reason). An escalated incident's plan never escalates again."""
    wave = incident.wave + 1
    planned = plan_wave(
        askable(candidates, offered=offered, ineligible=ineligible),
        already_offered=(),
        wave=wave,
        wave_size=wave_size_of(incident, wave_size, timing.max_waves),
        now=now,
        window_s=timing.window_s(incident.severity),
    )
    if incident.state == "escalated":
        return OfferPlan(wave, tuple(planned))
    if next_step(wave=wave, max_waves=timing.max_waves, planned=planned) == "offer":
        return OfferPlan(wave, tuple(planned))
    return OfferPlan(wave, escalation="no_acceptance" if planned else "no_candidates")
