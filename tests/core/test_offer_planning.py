"""Offer planning (``dispatch.planning``): whom an incident's next wave asks, or why it
escalates, from what the dispatcher read; no event loop."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch.eligibility import CERTIFICATE_EXPIRED, MISSING_SKILL, AgencyRules, Profile, ruled_out
from dispatch.model import Candidate, PlannedOffer, Ranked
from dispatch.offers import OfferTiming
from dispatch.planning import Escalation, OfferPlan, askable, plan_offers

NOW = 1_700_000_000.0
TIMING = OfferTiming(windows_s={1: 20.0}, default_window_s=45.0, max_waves=3)
OFF = MISSING_SKILL  # any reason the roster gives


@dataclass(frozen=True, slots=True)
class Incident:
    severity: int = 1
    wave: int = 0
    state: str = "offered"


def ranking(*ids: str) -> list[Ranked]:
    """Caregivers nearest first: the i-th (from 1) is 100 i metres and 10 i seconds away."""
    return [
        Ranked(Candidate(cid, "ag", 53.8, -1.55, NOW - 5, "available"), 100.0 * i, 10.0 * i)
        for i, cid in enumerate(ids, 1)
    ]


@dataclass(frozen=True, slots=True)
class Case:
    """What the dispatcher read, and what the wave should be."""

    ids: tuple[str, ...] = ("a", "b", "c")
    offered: frozenset[str] = frozenset()
    ineligible: tuple[str, ...] = ()
    waves_made: int = 0
    wave_size: int = 1
    severity: int = 1
    asked: tuple[str, ...] = ()
    escalation: Escalation | None = None

    def plan(self) -> OfferPlan:
        return plan_offers(
            Incident(self.severity, self.waves_made),
            ranking(*self.ids),
            offered=self.offered,
            ineligible=dict.fromkeys(self.ineligible, OFF),
            timing=TIMING,
            wave_size=self.wave_size,
            now=NOW,
        )


CASES = {
    "enough candidates: the nearest": Case(asked=("a",)),
    "a wave of two": Case(wave_size=2, asked=("a", "b")),
    "fewer than the wave": Case(ids=("a", "b"), wave_size=3, asked=("a", "b")),
    "no one: escalate": Case(ids=(), escalation="no_candidates"),
    "all asked already": Case(offered=frozenset("abc"), escalation="no_candidates"),
    "the next not asked": Case(offered=frozenset("a"), asked=("b",)),
    "ruled out: skipped": Case(ineligible=("a",), asked=("b",)),
    "asked and ruled out both skipped": Case(
        offered=frozenset("a"), ineligible=("b",), wave_size=2, asked=("c",)
    ),
    "all ruled out": Case(ineligible=("a", "b", "c"), escalation="no_candidates"),
    "the last wave allowed": Case(waves_made=2, asked=("a",)),
    "past the waves: escalate": Case(waves_made=3, escalation="no_acceptance"),
    "past the waves, no one": Case(ids=(), waves_made=3, escalation="no_candidates"),
    "a wave of none": Case(wave_size=0, escalation="no_candidates"),
    "each one once": Case(ids=("a", "a", "b"), wave_size=3, asked=("a", "b")),
    "others' verdicts change nothing": Case(
        offered=frozenset({"yy"}), ineligible=("zz",), asked=("a",)
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_plan_offers(case: Case) -> None:
    planned = case.plan()
    assert tuple(p.caregiver_id for p in planned.offers) == case.asked
    assert planned.escalation == case.escalation
    assert planned.wave == case.waves_made + 1


@pytest.mark.parametrize(("severity", "window_s"), [(1, 20.0), (2, 45.0), (3, 45.0)])
def test_an_offer_stands_for_its_severity_window(severity: int, window_s: float) -> None:
    (offer,) = Case(offered=frozenset("a"), waves_made=1, severity=severity).plan().offers
    assert offer == PlannedOffer("b", 2, 200.0, 20.0, NOW + window_s)


def test_ruled_out_gives_those_who_may_not_take_it_with_why_in_the_order_given() -> None:
    first_aid = frozenset({"first_aid"})
    profiles = {
        "unskilled": Profile(),
        "expired": Profile(skills=first_aid, certificates={"dbs": NOW - 1}),
        "able": Profile(skills=first_aid, certificates={"dbs": NOW + 1}),
    }
    rules = AgencyRules(require_skills=True)
    assert list(ruled_out(profiles, needs=first_aid, rules=rules, now=NOW).items()) == [
        ("unskilled", MISSING_SKILL),
        ("expired", CERTIFICATE_EXPIRED),
    ]
    assert ruled_out({"able": profiles["able"]}, needs=first_aid, rules=rules, now=NOW) == {}


# ---------------------------------------------------------------- laws

IDS = st.integers(0, 11).map(lambda i: f"cg{i}")


@given(
    ids=st.lists(IDS, max_size=14),
    offered=st.frozensets(IDS),
    ineligible=st.frozensets(IDS),
    wave_size=st.integers(0, 5),
    waves_made=st.integers(0, 5),
)
def test_a_plan_asks_at_most_a_wave_of_the_best_who_may_be_asked(
    ids: list[str],
    offered: frozenset[str],
    ineligible: frozenset[str],
    wave_size: int,
    waves_made: int,
) -> None:
    case = Case(tuple(ids), offered, tuple(ineligible), waves_made, wave_size)
    p = case.plan()
    chosen = [o.caregiver_id for o in p.offers]
    assert len(chosen) <= wave_size
    assert len(set(chosen)) == len(chosen)
    assert not set(chosen) & (offered | ineligible)
    assert (p.escalation is None) == bool(chosen)  # an escalation makes no offers
    may = askable(ranking(*ids), offered=offered, ineligible=dict.fromkeys(ineligible, OFF))
    if p.escalation is None:
        assert chosen == [r.candidate.caregiver_id for r in may][:wave_size]
    else:
        expected: Escalation = "no_acceptance" if may and wave_size else "no_candidates"
        assert p.escalation == expected


@given(
    n=st.integers(0, 15),
    ineligible=st.frozensets(st.integers(0, 15).map(lambda i: f"cg{i}")),
    wave_size=st.integers(1, 4),
    max_waves=st.integers(1, 6),
)
def test_an_incident_never_asks_anyone_twice_and_escalates_once_its_waves_run_out(
    n: int, ineligible: frozenset[str], wave_size: int, max_waves: int
) -> None:
    ids = [f"cg{i}" for i in range(n)]
    timing = OfferTiming(max_waves=max_waves)
    incident = Incident()
    offered: list[str] = []
    while True:
        p = plan_offers(
            incident,
            ranking(*ids),
            offered=frozenset(offered),
            ineligible=dict.fromkeys(ineligible, OFF),
            timing=timing,
            wave_size=wave_size,
            now=NOW,
        )
        if p.escalation is not None:
            break
        offered += [o.caregiver_id for o in p.offers]
        incident = Incident(wave=p.wave)
    assert len(offered) == len(set(offered))
    assert incident.wave <= max_waves
    may = [i for i in ids if i not in ineligible]
    assert len(offered) == min(len(may), wave_size * max_waves)
    assert p.escalation == ("no_candidates" if len(offered) == len(may) else "no_acceptance")
