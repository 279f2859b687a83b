"""Pure dispatch core: distances, ranking, offer waves, escalation, search rings."""

from __future__ import annotations

import math

import h3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch.eta import StraightLineModel, haversine_m
from dispatch.model import Candidate, PlannedOffer, Ranked
from dispatch.offers import next_step, plan_wave, severity_of
from dispatch.ranking import (
    AREA_RESOLUTION,
    STREET_RESOLUTION,
    is_eligible,
    rank,
    search_plan,
)

NOW = 1_700_000_000.0
STALE_S = 120.0
MODEL = StraightLineModel()
LEEDS = (53.7997, -1.5492)


# ---------------------------------------------------------------- distance and ETA


@pytest.mark.parametrize(
    ("a", "b", "km"),
    [
        (LEEDS, (53.9590, -1.0815), 35.4),  # Leeds - York
        ((51.5074, -0.1278), (48.8566, 2.3522), 343.6),  # London - Paris
        ((0.0, 0.0), (0.0, 1.0), 111.2),  # one degree of the equator
        ((0.0, 0.0), (0.0, 180.0), math.pi * 6371.0088),  # antipodes
        ((90.0, 0.0), (-90.0, 0.0), math.pi * 6371.0088),  # pole to pole
    ],
)
def test_haversine_known_distances(
    a: tuple[float, float], b: tuple[float, float], km: float
) -> None:
    assert haversine_m(*a, *b) == pytest.approx(km * 1000, rel=0.01)
    assert haversine_m(*b, *a) == pytest.approx(haversine_m(*a, *b))


def test_haversine_of_a_point_to_itself_is_zero() -> None:
    assert haversine_m(*LEEDS, *LEEDS) == 0.0


@pytest.mark.parametrize(
    ("model", "distance_m", "eta_s"),
    [
        (StraightLineModel(), 0.0, 0.0),
        (StraightLineModel(speed_kmh=36.0, detour=1.0), 1000.0, 100.0),
        (StraightLineModel(speed_kmh=30.0, detour=1.3), 1000.0, 156.0),
    ],
)
def test_straight_line_eta(model: StraightLineModel, distance_m: float, eta_s: float) -> None:
    assert model.eta_s(distance_m) == pytest.approx(eta_s)


@pytest.mark.parametrize(
    ("kind", "severity"), [("fall", 1), ("sos", 1), ("dispenser_tamper", 2), ("motion", 3)]
)
def test_severity(kind: str, severity: int) -> None:
    assert severity_of(kind) == severity


# ---------------------------------------------------------------- ranking


def cand(
    cid: str,
    *,
    north_m: float = 0.0,
    agency: str = "ag",
    age_s: float = 10.0,
    status: str = "available",
) -> Candidate:
    """A caregiver ``north_m`` metres north of Leeds with a fix ``age_s`` old."""
    return Candidate(cid, agency, LEEDS[0] + north_m / 111_195, LEEDS[1], NOW - age_s, status)


def ranked_ids(candidates: list[Candidate]) -> list[str]:
    out = rank(
        candidates,
        agency_id="ag",
        lat=LEEDS[0],
        lon=LEEDS[1],
        model=MODEL,
        now=NOW,
        stale_after_s=STALE_S,
    )
    return [r.candidate.caregiver_id for r in out]


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        ([], []),
        ([cand("far", north_m=900), cand("near", north_m=100)], ["near", "far"]),
        ([cand("other", agency="ag2"), cand("mine", north_m=500)], ["mine"]),
        ([cand("busy", status="busy"), cand("free", north_m=500)], ["free"]),
        ([cand("off", status="offline")], []),
        ([cand("stale", age_s=STALE_S + 0.001), cand("fresh", north_m=500)], ["fresh"]),
        ([cand("edge", age_s=STALE_S)], ["edge"]),  # exactly stale_after_s old is fresh
        ([cand("future", age_s=-30)], ["future"]),
        ([cand("b", north_m=300), cand("a", north_m=300), cand("c", north_m=300)], ["a", "b", "c"]),
        ([cand("south", north_m=-200), cand("north", north_m=300)], ["south", "north"]),
    ],
)
def test_rank(candidates: list[Candidate], expected: list[str]) -> None:
    assert ranked_ids(candidates) == expected


def test_rank_reports_distance_and_eta() -> None:
    (r,) = rank(
        [cand("c", north_m=1000)],
        agency_id="ag",
        lat=LEEDS[0],
        lon=LEEDS[1],
        model=MODEL,
        now=NOW,
        stale_after_s=STALE_S,
    )
    assert r.distance_m == pytest.approx(1000, rel=0.001)
    assert r.eta_s == pytest.approx(MODEL.eta_s(r.distance_m))


@pytest.mark.parametrize(
    ("c", "eligible"),
    [
        (cand("x"), True),
        (cand("x", agency="other"), False),
        (cand("x", status="busy"), False),
        (cand("x", age_s=STALE_S + 1), False),
    ],
)
def test_is_eligible(c: Candidate, eligible: bool) -> None:
    assert is_eligible(c, "ag", NOW, STALE_S) is eligible


# ---------------------------------------------------------------- offer waves


def ranking(*ids: str) -> list[Ranked]:
    return [Ranked(cand(cid), 100.0 * i, 10.0 * i) for i, cid in enumerate(ids, 1)]


@pytest.mark.parametrize(
    ("ids", "offered", "wave_size", "expected"),
    [
        (("a", "b", "c"), set(), 1, ["a"]),
        (("a", "b", "c"), set(), 2, ["a", "b"]),
        (("a", "b", "c"), {"a"}, 1, ["b"]),
        (("a", "b", "c"), {"a", "c"}, 5, ["b"]),
        (("a", "b", "c"), {"a", "b", "c"}, 1, []),
        (("a", "b"), set(), 10, ["a", "b"]),
        ((), set(), 3, []),
        (("a", "b"), {"zz"}, 0, []),
    ],
)
def test_plan_wave(
    ids: tuple[str, ...], offered: set[str], wave_size: int, expected: list[str]
) -> None:
    planned = plan_wave(
        ranking(*ids), already_offered=offered, wave=2, wave_size=wave_size, now=NOW, window_s=45
    )
    assert [p.caregiver_id for p in planned] == expected
    assert all(p.wave == 2 and p.expires_at == NOW + 45 for p in planned)


def test_plan_wave_carries_distance_and_eta() -> None:
    (p,) = plan_wave(
        ranking("a", "b"), already_offered={"a"}, wave=3, wave_size=1, now=NOW, window_s=30
    )
    assert p == PlannedOffer("b", 3, 200.0, 20.0, NOW + 30)


ONE = [PlannedOffer("a", 1, 1.0, 1.0, NOW)]


@pytest.mark.parametrize(
    ("wave", "max_waves", "planned", "step"),
    [
        (1, 3, ONE, "offer"),
        (3, 3, ONE, "offer"),
        (4, 3, ONE, "escalate"),
        (1, 3, [], "escalate"),
        (3, 3, [], "escalate"),
        (1, 0, ONE, "escalate"),
    ],
)
def test_next_step(wave: int, max_waves: int, planned: list[PlannedOffer], step: str) -> None:
    assert next_step(wave=wave, max_waves=max_waves, planned=planned) == step


@given(
    n=st.integers(0, 12),
    offered=st.sets(st.integers(0, 14).map(lambda i: f"cg{i}")),
    wave_size=st.integers(0, 5),
)
def test_plan_wave_never_reoffers_and_respects_size(
    n: int, offered: set[str], wave_size: int
) -> None:
    ids = [f"cg{i}" for i in range(n)]
    planned = plan_wave(
        ranking(*ids), already_offered=offered, wave=1, wave_size=wave_size, now=NOW, window_s=9
    )
    chosen = [p.caregiver_id for p in planned]
    assert len(chosen) <= wave_size
    assert not set(chosen) & offered
    assert len(set(chosen)) == len(chosen)
    fresh = [i for i in ids if i not in offered]
    assert chosen == fresh[:wave_size]  # the best of those not yet asked


@given(n=st.integers(0, 15), wave_size=st.integers(1, 4), max_waves=st.integers(1, 6))
def test_successive_waves_never_repeat_a_caregiver(n: int, wave_size: int, max_waves: int) -> None:
    ranked = ranking(*(f"cg{i}" for i in range(n)))
    offered: list[str] = []
    wave = 1
    while True:
        planned = plan_wave(
            ranked,
            already_offered=set(offered),
            wave=wave,
            wave_size=wave_size,
            now=NOW,
            window_s=9,
        )
        if next_step(wave=wave, max_waves=max_waves, planned=planned) == "escalate":
            break
        assert 1 <= len(planned) <= wave_size
        offered += [p.caregiver_id for p in planned]
        wave += 1
    assert len(offered) == len(set(offered))
    assert len(offered) == min(n, wave_size * max_waves)
    assert wave - 1 <= max_waves


# ---------------------------------------------------------------- search plan


@pytest.mark.parametrize("where", [LEEDS, (51.5074, -0.1278), (-33.86, 151.21)])
def test_search_plan_goes_from_street_to_area_outwards(where: tuple[float, float]) -> None:
    steps = list(search_plan(*where, area_rings=3))
    street = h3.latlng_to_cell(*where, STREET_RESOLUTION)
    area = h3.cell_to_parent(street, AREA_RESOLUTION)
    assert [s.level for s in steps] == ["street", "area", "area"]
    assert street in steps[0].cells
    assert len(steps[0].cells) == 19
    assert all(h3.grid_distance(street, c) <= 2 for c in steps[0].cells)
    assert set(steps[1].cells) == set(h3.grid_disk(area, 1))
    assert all(h3.grid_distance(area, c) in (2, 3) for c in steps[2].cells)
    assert len(steps[2].cells) == 6 * 2 + 6 * 3
    every_area = [*steps[1].cells, *steps[2].cells]
    assert len(every_area) == len(set(every_area))


def test_search_plan_with_one_area_ring_stops_at_the_neighbours() -> None:
    assert [s.level for s in search_plan(*LEEDS, area_rings=1)] == ["street", "area"]
