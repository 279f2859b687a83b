"""The simulated city's pure core: deterministic, inside Leeds, physically plausible."""

from __future__ import annotations

import random
from collections import defaultdict
from itertools import pairwise

import orjson
import pytest

from kernel.backoff import Backoff
from kernel.contracts import DeviceEventPayload, LocationPayload
from simulators.city import City, Fall, SimFix
from simulators.geo import Point, bearing_deg, distance_m, offset
from simulators.population import AGENCY_ID, CENTRE, CityConfig, populate
from simulators.simulate import (
    event_topic,
    fall_payload,
    location_payload,
    location_topic,
    plan_answer,
)

START = 1_760_000_000.0


def trace(city: City, seconds: float, tick: float = 1.0) -> list[SimFix]:
    fixes: list[SimFix] = []
    steps = int(seconds / tick)
    for i in range(steps + 1):
        fixes.extend(city.step(START + i * tick))
    return fixes


def by_caregiver(fixes: list[SimFix]) -> dict[str, list[SimFix]]:
    out: dict[str, list[SimFix]] = defaultdict(list)
    for fix in fixes:
        out[fix.caregiver_id].append(fix)
    return out


# ---------------------------------------------------------------- geometry


def test_distance_and_offset_agree() -> None:
    moved = offset(CENTRE, north_m=3000.0, east_m=4000.0)
    assert distance_m(CENTRE, moved) == pytest.approx(5000.0, rel=1e-3)
    assert bearing_deg(CENTRE, offset(CENTRE, 0.0, 1000.0)) == pytest.approx(90.0, abs=0.1)
    assert bearing_deg(CENTRE, offset(CENTRE, -1000.0, 0.0)) == pytest.approx(180.0, abs=0.1)


# ---------------------------------------------------------------- population


def test_population_ids_and_registry_shape() -> None:
    homes, caregivers = populate(CityConfig(caregivers=12, homes=30))
    assert [h.patient_id for h in homes[:2]] == ["leeds-p001", "leeds-p002"]
    assert [h.device_id for h in homes[:2]] == ["leeds-fd001", "leeds-fd002"]
    assert [c.id for c in caregivers[:2]] == ["leeds-cg01", "leeds-cg02"]
    assert len({c.id for c in caregivers}) == 12
    assert all(c.id.startswith(f"{AGENCY_ID}-") and c.name.count(" ") == 1 for c in caregivers)
    assert all("first_aid" in c.skills for c in caregivers)
    assert all(distance_m(CENTRE, h.at) <= 8000.0 + 20.0 for h in homes)


def test_population_is_seeded() -> None:
    assert populate(CityConfig(seed=3)) == populate(CityConfig(seed=3))
    assert populate(CityConfig(seed=3)) != populate(CityConfig(seed=4))


# ---------------------------------------------------------------- fixes


def test_same_seed_same_trace() -> None:
    config = CityConfig(caregivers=10, homes=40, seed=11)
    a = trace(City(config, START), 900.0, tick=0.2)
    b = trace(City(config, START), 900.0, tick=0.2)
    assert a == b
    assert len(a) > 1000
    other = trace(City(CityConfig(caregivers=10, homes=40, seed=12), START), 900.0, tick=0.2)
    assert a != other


def test_a_city_started_mid_second_reports_from_the_start() -> None:
    city = City(CityConfig(caregivers=5, homes=20), START + 0.7)
    fixes = [fix for i in range(20) for fix in city.step(START + 0.7 + i * 0.5)]
    assert len({fix.caregiver_id for fix in fixes}) == 5


def test_fixes_stay_inside_the_city() -> None:
    config = CityConfig(caregivers=20, homes=60, seed=5)
    fixes = trace(City(config, START), 4 * 3600.0, tick=2.0)
    assert fixes
    for fix in fixes:
        assert -90.0 <= fix.lat <= 90.0 and -180.0 <= fix.lon <= 180.0
        assert distance_m(CENTRE, Point(fix.lat, fix.lon)) <= config.radius_m + 100.0
        assert 5.0 <= fix.acc <= 30.0
        assert 0 <= fix.batt <= 100 and fix.vel >= 0.0


def test_every_fix_is_a_valid_owntracks_payload() -> None:
    fixes = trace(City(CityConfig(caregivers=5, homes=20), START), 600.0)
    for fix in fixes[:200]:
        parsed = LocationPayload.model_validate_json(location_payload(fix))
        assert (parsed.lat, parsed.lon, parsed.tst) == pytest.approx((fix.lat, fix.lon, fix.tst))
    assert location_topic("leeds-cg01") == "ck/leeds/cg/leeds-cg01/loc"


def test_speeds_between_fixes_are_plausible() -> None:
    config = CityConfig(caregivers=20, homes=60, seed=9, fix_interval_s=3.0)
    fixes = trace(City(config, START), 3 * 3600.0, tick=0.5)
    checked = 0
    moving = 0.0
    for own in by_caregiver(fixes).values():
        for a, b in pairwise(own):
            dt = b.tst - a.tst
            assert dt > 0
            if dt > 2 * config.fix_interval_s + 1:  # across an outage
                continue
            kmh = distance_m(Point(a.lat, a.lon), Point(b.lat, b.lon)) / dt * 3.6
            assert kmh < 120.0, (a, b)
            checked += 1
            moving = max(moving, kmh)
    assert checked > 10_000
    assert moving > 15.0  # they do travel


def test_outages_leave_gaps() -> None:
    config = CityConfig(caregivers=10, homes=30, outages_per_hour=4.0, fix_interval_s=3.0)
    fixes = trace(City(config, START), 2 * 3600.0)
    gaps = [b.tst - a.tst for own in by_caregiver(fixes).values() for a, b in pairwise(own)]
    assert sum(gap >= 30 for gap in gaps) >= 20
    assert max(gaps) <= 250


def test_a_dwelling_caregiver_reports_from_the_home() -> None:
    config = CityConfig(caregivers=15, homes=50, seed=21, fix_interval_s=3.0)
    city = City(config, START)
    homes = {h.at for h in city.homes}
    dwelling = 0
    for i in range(int(2 * 3600 / 3)):
        for fix in city.step(START + i * 3.0):
            index = int(fix.caregiver_id.removeprefix("leeds-cg")) - 1
            true, vel, _cog = city.where(index, fix.tst)
            if vel == 0.0:
                assert true in homes
                assert distance_m(true, Point(fix.lat, fix.lon)) < 50.0
                assert fix.vel == 0.0
                dwelling += 1
    assert dwelling > 500


def test_dwell_is_compressed_by_time_scale() -> None:
    slow = City(CityConfig(caregivers=1, homes=20, time_scale=1.0), START)
    fast = City(CityConfig(caregivers=1, homes=20, time_scale=60.0), START)
    trips = []
    for city in (slow, fast):
        visits = 0
        last_moving = False
        for i in range(int(4 * 3600 / 5)):
            _p, vel, _c = city.where(0, START + i * 5.0)
            visits += int(last_moving and vel == 0.0)
            last_moving = vel > 0
        trips.append(visits)
    assert trips[1] > 3 * max(1, trips[0])


# ---------------------------------------------------------------- falls


def test_fall_rate_matches_poisson() -> None:
    city = City(CityConfig(falls_per_minute=2.0, seed=4), START)
    minutes = 1000
    falls: list[Fall] = []
    for i in range(minutes * 6 + 1):
        falls.extend(city.maybe_falls(START + i * 10.0))
    expected = 2.0 * minutes  # sd ~ 45
    assert abs(len(falls) - expected) < 0.1 * expected
    devices = {h.device_id for h in city.homes}
    assert {f.device_id for f in falls} <= devices
    seqs: dict[str, list[int]] = defaultdict(list)
    for fall in falls:
        seqs[fall.device_id].append(fall.seq)
    assert all(s == sorted(set(s)) and s[0] > int(START) for s in seqs.values())


def test_no_falls_at_rate_zero() -> None:
    city = City(CityConfig(falls_per_minute=0.0), START)
    assert city.maybe_falls(START + 86_400) == []


def test_fall_payload_is_a_valid_device_event() -> None:
    body = fall_payload(Fall("leeds-fd007", 42), START, START + 0.01)
    event = DeviceEventPayload.model_validate_json(body)
    assert (event.type, event.seq, event.data["sent_at"]) == ("fall", 42, START + 0.01)
    assert event_topic("leeds-fd007") == "ck/leeds/dev/leeds-fd007/evt"


# ---------------------------------------------------------------- answers and backoff


def test_answers_are_mostly_accepts_within_the_delay() -> None:
    config = CityConfig()
    rng = random.Random(1)
    answers = [plan_answer(rng, config) for _ in range(2000)]
    accepts = sum(answer == "accept" for _delay, answer in answers) / len(answers)
    assert accepts == pytest.approx(0.7, abs=0.05)
    assert all(2.0 <= delay <= 10.0 for delay, _answer in answers)


def test_backoff_grows_to_its_cap_and_resets() -> None:
    backoff = Backoff(first=0.5, cap=8.0, rng=random.Random(2))
    delays = [backoff.next() for _ in range(10)]
    assert delays[0] <= 0.5
    assert all(d <= 8.0 for d in delays) and max(delays) >= 4.0
    backoff.reset()
    assert backoff.next() <= 0.5


def test_payloads_are_json_objects() -> None:
    fix = SimFix("leeds-cg01", 53.8, -1.55, int(START), 8.0, 0.0, 80, None)
    assert "cog" not in orjson.loads(location_payload(fix))
