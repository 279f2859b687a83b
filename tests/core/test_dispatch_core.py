"""Pure dispatch core: distances, ranking, offer waves, escalation, search rings."""

from __future__ import annotations

import math

import h3
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from careknot.running import resolved_settings
from careknot.up import settings_env
from dispatch.eta import StraightLineModel, haversine_m
from dispatch.model import Candidate, PlannedOffer, Ranked
from dispatch.offers import (
    DEFAULT_WINDOW_S,
    ESCALATE_AFTER_S,
    SEVERITIES,
    OfferTiming,
    next_step,
    plan_wave,
    severity_of,
)
from dispatch.ranking import (
    AREA_RESOLUTION,
    STREET_RESOLUTION,
    is_eligible,
    rank,
    search_plan,
)
from kernel.settings import Settings

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


# ---------------------------------------------------------------- offer window per severity


def test_by_default_an_emergency_has_a_shorter_window_and_everything_else_45_s() -> None:
    timing = OfferTiming()
    assert timing.window_s(severity_of("fall")) == timing.window_s(severity_of("sos")) == 20.0
    assert timing.window_s(severity_of("dispenser_tamper")) == DEFAULT_WINDOW_S == 45.0
    assert timing.window_s(severity_of("dose_missed")) == 45.0
    assert timing.window_s(7) == 45.0  # a severity of no one's


def test_settings_make_the_same_timing_as_the_core_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OFFER_WINDOW_S", "OFFER_WINDOW_BY_SEVERITY", "MAX_WAVES"):
        monkeypatch.delenv(f"CAREKNOT_{name}", raising=False)
    s = Settings()
    timing = OfferTiming(s.offer_window_by_severity, s.offer_window_s, s.max_waves)
    assert timing == OfferTiming()


@pytest.mark.parametrize(
    ("windows", "default_s", "max_waves", "severity", "after_s", "expected"),
    [
        ({1: 20.0}, 45.0, 3, 1, 40.0, 40.0),  # the defaults: 40 s, before the third wave ends
        ({1: 20.0}, 45.0, 3, 3, 40.0, 40.0),  # a longer window never puts it off
        ({1: 10.0}, 45.0, 3, 1, 40.0, 30.0),  # three 10 s waves are over at 30 s
        ({1: 10.0}, 45.0, 2, 1, 40.0, 20.0),
        ({}, 5.0, 3, 2, 40.0, 15.0),  # the default window, shorter
        ({1: 60.0}, 45.0, 1, 1, 40.0, 40.0),
        ({1: 20.0}, 45.0, 0, 1, 40.0, 0.0),  # no waves at all: escalated at once
    ],
)
def test_the_time_rule_follows_the_waves_of_the_severity(
    windows: dict[int, float],
    default_s: float,
    max_waves: int,
    severity: int,
    after_s: float,
    expected: float,
) -> None:
    timing = OfferTiming(windows, default_s, max_waves)
    assert timing.escalate_after_s(severity, after_s) == expected


def test_the_defaults_escalate_an_emergency_well_within_a_minute() -> None:
    assert OfferTiming().escalate_after_s(severity_of("fall"), ESCALATE_AFTER_S) <= 45.0


@given(
    window_s=st.floats(1.0, 600.0),
    shorter_s=st.floats(1.0, 600.0),
    max_waves=st.integers(0, 6),
    after_s=st.floats(1.0, 600.0),
)
def test_a_shorter_window_never_delays_escalation(
    window_s: float, shorter_s: float, max_waves: int, after_s: float
) -> None:
    shorter_s = min(shorter_s, window_s)
    long = OfferTiming({1: window_s}, max_waves=max_waves).escalate_after_s(1, after_s)
    short = OfferTiming({1: shorter_s}, max_waves=max_waves).escalate_after_s(1, after_s)
    assert short <= long <= after_s
    assert long <= max_waves * window_s


def test_opened_before_gives_each_severity_its_own_deadline() -> None:
    timing = OfferTiming({1: 10.0, 2: 30.0}, 45.0, max_waves=2)
    assert timing.opened_before(NOW, 40.0) == {1: NOW - 20.0, 2: NOW - 40.0, 3: NOW - 40.0}
    assert set(timing.opened_before(NOW, 40.0)) == set(SEVERITIES)


def test_a_wave_expires_after_its_severity_window() -> None:
    timing = OfferTiming({1: 12.0})
    for severity, window in [(1, 12.0), (2, 45.0)]:
        (p,) = plan_wave(
            ranking("a"),
            already_offered=set(),
            wave=1,
            wave_size=1,
            now=NOW,
            window_s=timing.window_s(severity),
        )
        assert p.expires_at == NOW + window


def test_windows_per_severity_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREKNOT_OFFER_WINDOW_BY_SEVERITY", '{"1": 15, "3": 90}')
    monkeypatch.setenv("CAREKNOT_OFFER_WINDOW_S", "50")
    s = Settings()
    assert (s.offer_window_by_severity, s.offer_window_s) == ({1: 15.0, 3: 90.0}, 50.0)


def test_windows_per_severity_pass_through_a_child_process_environment() -> None:
    windows = {1: 4.0, 2: 30.0}
    env = settings_env(Settings(offer_window_by_severity=windows))
    assert resolved_settings(env).offer_window_by_severity == windows


@pytest.mark.parametrize("raw", ['{"1": 0}', '{"1": -5}', '{"4": 20}', '{"0": 20}', "[20]"])
def test_windows_per_severity_must_be_positive_and_of_a_known_severity(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("CAREKNOT_OFFER_WINDOW_BY_SEVERITY", raw)
    with pytest.raises(ValidationError):
        Settings()


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
