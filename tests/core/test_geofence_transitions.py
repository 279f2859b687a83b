"""Transitions: dwell before arrived and left, no flapping at the edge, passes between sparse
fixes, and a state that survives a restart."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.fences import Fence, Relation
from geofence.geodesy import LocalFrame
from geofence.index import FenceIndex
from geofence.observe import observe, observe_many
from geofence.transitions import (
    FenceTracker,
    Fix,
    Segment,
    TrackerConfig,
    Transition,
    segments_ahead,
)
from kernel.contracts import FixEvent
from simulators.city import City
from simulators.population import CityConfig
from streams.visit_keeper import track_fixes

HOME = (53.8008, -1.5491)
T0 = 1_760_000_000.0
IN, OUT, EDGE = Relation.INSIDE, Relation.OUTSIDE, Relation.STRADDLES


def at(north_m: float, east_m: float, origin: tuple[float, float] = HOME) -> tuple[float, float]:
    lon, lat = LocalFrame(*origin).to_lonlat(east_m, north_m)
    return lat, lon


def run(steps: Sequence[tuple[float, Relation]], config: TrackerConfig | None = None) -> list[str]:
    """Feed (seconds after T0, relation to fence "h") to a fresh tracker; 'kind@seconds'."""
    tracker = FenceTracker("cg1", config)
    out = []
    for t, relation in steps:
        fix = Fix("cg1", *HOME, T0 + t)
        seen = {} if relation is OUT else {"h": relation}
        out += [f"{x.kind}@{x.at - T0:g}" for x in tracker.update(fix, seen)]
    return out


# ---------------------------------------------------------------- dwell, table-driven


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([(0, IN), (30, IN), (59, IN)], []),  # not yet a minute
        ([(0, IN), (30, IN), (60, IN)], ["arrived@0"]),
        ([(0, OUT), (10, IN), (70, IN)], ["arrived@10"]),
        ([(0, IN), (30, OUT), (60, IN), (119, IN)], ["passed@0"]),  # cancelled, then pending again
        ([(0, IN), (30, OUT), (60, IN), (120, IN)], ["passed@0", "arrived@60"]),
        ([(0, IN), (30, EDGE), (60, IN)], ["arrived@0"]),  # straddling cancels nothing
        ([(0, EDGE), (100, EDGE), (200, EDGE)], []),  # straddling starts nothing
        ([(0, IN), (60, IN), (100, OUT), (219, OUT)], ["arrived@0"]),
        ([(0, IN), (60, IN), (100, OUT), (220, OUT)], ["arrived@0", "left@100"]),
        ([(0, IN), (60, IN), (100, OUT), (150, IN), (260, OUT)], ["arrived@0"]),  # came back
        ([(0, IN), (60, IN), (100, OUT), (150, EDGE), (220, OUT)], ["arrived@0", "left@100"]),
        ([(0, IN), (60, IN), (100, EDGE), (400, EDGE)], ["arrived@0"]),  # unsure: stays in
    ],
)
def test_dwell(steps: list[tuple[float, Relation]], expected: list[str]) -> None:
    assert run(steps) == expected


def test_dwell_times_are_configurable() -> None:
    config = TrackerConfig(min_dwell_in_s=0.0, min_dwell_out_s=10.0)
    assert run([(0, IN), (5, OUT), (15, OUT)], config) == ["arrived@0", "left@5"]


@pytest.mark.parametrize(
    "fix",
    [
        Fix("cg2", *HOME, T0 + 100),  # someone else's
        Fix("cg1", *HOME, T0 + 10),  # older than the last
        Fix("cg1", *HOME, T0 + 30),  # the same time as the last
        Fix("cg1", *HOME, T0 + 100, acc=80.0),  # too coarse
    ],
)
def test_unusable_fixes_change_nothing(fix: Fix) -> None:
    tracker = FenceTracker("cg1")
    tracker.update(Fix("cg1", *HOME, T0), {"h": IN})
    tracker.update(Fix("cg1", *HOME, T0 + 30), {"h": IN})
    before = tracker.to_dict()
    assert tracker.update(fix, {"h": IN}) == []
    assert tracker.to_dict() == before


def test_segment_crossing_counts_as_a_pass() -> None:
    tracker = FenceTracker("cg1")
    tracker.update(Fix("cg1", *at(-900, 0), T0), {})
    fix = Fix("cg1", *at(900, 0), T0 + 200)
    assert tracker.segment_to(fix) is not None
    [passed] = tracker.update(fix, {}, crossed={"h"})
    assert (passed.kind, passed.fence_id, passed.at) == ("passed", "h", T0)
    assert tracker.inside == frozenset()


def test_no_segment_when_fixes_are_close_or_far_apart_in_time() -> None:
    tracker = FenceTracker("cg1")
    tracker.update(Fix("cg1", *HOME, T0), {})
    assert tracker.segment_to(Fix("cg1", *at(30, 0), T0 + 3)) is None  # dense enough
    assert tracker.segment_to(Fix("cg1", *at(900, 0), T0 + 3600)) is None  # too long a gap
    assert FenceTracker("cg1").segment_to(Fix("cg1", *HOME, T0)) is None  # no last fix


def test_state_round_trips_and_rejects_garbage() -> None:
    tracker = FenceTracker("cg1")
    for t, r in [(0, IN), (60, IN), (100, OUT)]:
        tracker.update(Fix("cg1", *HOME, T0 + t, 12.0), {} if r is OUT else {"h": r})
    data = tracker.to_dict()
    again = FenceTracker.from_dict(data)
    assert again.to_dict() == data and again.inside == {"h"} and again.last == tracker.last
    for garbage in ({}, {"caregiver_id": "x", "last": "no", "fences": {}}, {"fences": 3}):
        with pytest.raises(ValueError, match="tracker state"):
            FenceTracker.from_dict(garbage)


# ---------------------------------------------------------------- the law: they alternate

relations = st.sampled_from([IN, OUT, EDGE])
steps = st.lists(
    st.tuples(
        st.floats(-5.0, 400.0),  # seconds since the previous fix (negative: out of order)
        st.tuples(relations, relations),  # to fences "a" and "b"
        st.sets(st.sampled_from(["a", "b", "c"])),  # crossed by the segment
        st.floats(0.0, 80.0),  # accuracy
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(steps=steps, restart_at=st.integers(0, 60))
def test_arrived_and_left_alternate_whatever_the_fixes(
    steps: list[tuple[float, tuple[Relation, Relation], set[str], float]], restart_at: int
) -> None:
    tracker, t = FenceTracker("cg1"), T0
    seen: list[Transition] = []
    for i, (dt, (ra, rb), crossed, acc) in enumerate(steps):
        if i == restart_at:  # a worker restart in the middle changes nothing
            tracker = FenceTracker.from_dict(tracker.to_dict())
        t += dt
        given_relations = {f: r for f, r in (("a", ra), ("b", rb)) if r is not OUT}
        seen += tracker.update(Fix("cg1", *HOME, t, acc), given_relations, crossed)
    for fence_id in ("a", "b", "c"):
        kinds = [x.kind for x in seen if x.fence_id == fence_id]
        visits = [k for k in kinds if k != "passed"]
        assert visits == ["arrived", "left"] * (len(visits) // 2) + ["arrived"] * (len(visits) % 2)
        inside = False
        for kind in kinds:  # a pass only while out
            assert not (kind == "passed" and inside)
            inside = {"arrived": True, "left": False}.get(kind, inside)
        assert (fence_id in tracker.inside) == inside


@settings(max_examples=200, deadline=None)
@given(steps=steps)
def test_the_revision_moves_exactly_when_the_fence_states_change(
    steps: list[tuple[float, tuple[Relation, Relation], set[str], float]],
) -> None:
    tracker, t = FenceTracker("cg1"), T0
    for dt, (ra, rb), crossed, acc in steps:
        t += dt
        before = (tracker.revision, tracker.fence_states())
        relations = {f: r for f, r in (("a", ra), ("b", rb))}
        tracker.update(Fix("cg1", *HOME, t, acc), relations, crossed)
        assert (tracker.revision != before[0]) == (tracker.fence_states() != before[1])


# ---------------------------------------------------------------- replayed GPS traces


def noisy_trace(
    positions: Sequence[tuple[float, float]], interval_s: float, sigma: float, seed: int
) -> list[Fix]:
    """Fixes at local (north, east) positions with correlated noise, like a phone's."""
    rng, noise, fixes = random.Random(seed), (0.0, 0.0), []
    for i, (north, east) in enumerate(positions):
        noise = tuple(0.9 * n + math.sqrt(0.19) * rng.gauss(0, sigma) for n in noise)  # type: ignore[assignment]
        acc = max(5.0, 2.5 * sigma + rng.uniform(-2.0, 6.0))
        fixes.append(Fix("cg1", *at(north + noise[0], east + noise[1]), T0 + i * interval_s, acc))
    return fixes


def replay(index: FenceIndex, fixes: Sequence[Fix]) -> list[tuple[str, str]]:
    return [(x.kind, x.fence_id) for x in observe_many(index, {}, fixes)]


@pytest.mark.parametrize(
    ("distance_m", "at_most"),
    [(170.0, 1), (185.0, 1), (200.0, 2), (215.0, 1), (230.0, 0)],
)
def test_parked_at_the_edge_does_not_flap(distance_m: float, at_most: int) -> None:
    """An hour parked near the edge of a 200 m fence, fixes every 3 s with 8 m of noise: at
    most one arrival (and, right on the edge, one departure), never back and forth."""
    index = FenceIndex([Fence.circle("home", "p1", "a1", *HOME)])
    for seed in range(3):
        fixes = noisy_trace([(distance_m, 0.0)] * 1200, 3.0, 8.0, seed)
        seen = replay(index, fixes)
        kinds = [k for k, _ in seen if k != "passed"]
        assert kinds == ["arrived", "left"][: len(kinds)]
        assert len(seen) <= 2
        assert len(kinds) <= at_most


def test_a_visit_with_jitter_is_one_arrival_and_one_departure() -> None:
    index = FenceIndex([Fence.circle("home", "p1", "a1", *HOME)])
    drive_in = [(-2000.0 + 25.0 * i, 0.0) for i in range(80)]  # 30 km/h, a fix every 3 s
    stay = [(0.0, 10.0)] * 600  # half an hour indoors
    drive_out = [(25.0 * i, 0.0) for i in range(80)]
    fixes = noisy_trace([*drive_in, *stay, *drive_out], 3.0, 8.0, seed=5)
    assert replay(index, fixes) == [("arrived", "home"), ("left", "home")]


def test_sparse_fixes_either_side_of_a_home_are_a_pass() -> None:
    index = FenceIndex([Fence.circle("home", "p1", "a1", *HOME, 60.0)])
    fixes = noisy_trace([(-700.0, 5.0), (-250.0, 5.0), (250.0, 5.0), (700.0, 5.0)], 30.0, 4.0, 1)
    assert replay(index, fixes) == [("passed", "home")]


def test_a_batch_gives_what_one_fix_at_a_time_gives() -> None:
    fences = [Fence.circle(f"h{i}", "p", "a1", *at(300.0 * i, 0.0), 100.0) for i in range(5)]
    index = FenceIndex(fences)
    route = [(20.0 * i, 3.0) for i in range(80)]
    fixes = [*noisy_trace(route, 15.0, 6.0, 2), *noisy_trace(route[::-1], 15.0, 6.0, 3)]
    fixes = [f._replace(ts=T0 + 15.0 * i) for i, f in enumerate(fixes)]
    one = FenceTracker("cg1")
    expected = [x for fix in fixes for x in observe(index, one, fix)]
    trackers: dict[str, FenceTracker] = {}
    assert observe_many(index, trackers, fixes) == expected
    assert trackers["cg1"].to_dict() == one.to_dict()


def test_the_simulated_city_replays_into_alternating_visits() -> None:
    city = City(CityConfig(caregivers=3, homes=30, time_scale=2.0, seed=11), T0)
    index = FenceIndex(
        Fence.circle(h.patient_id, h.patient_id, "leeds", h.at.lat, h.at.lon, 100.0)
        for h in city.homes
    )
    trackers: dict[str, FenceTracker] = {}
    seen: list[Transition] = []
    for second in range(0, 3 * 3600, 30):
        fixes = [Fix(f.caregiver_id, f.lat, f.lon, f.tst, f.acc) for f in city.step(T0 + second)]
        seen += observe_many(index, trackers, fixes)
    for caregiver in trackers:
        mine = [x for x in seen if x.caregiver_id == caregiver and x.kind != "passed"]
        assert sum(x.kind == "arrived" for x in mine) >= 2
        for home in {x.fence_id for x in mine}:
            kinds = [x.kind for x in mine if x.fence_id == home]
            assert kinds == ["arrived", "left"] * (len(kinds) // 2) + ["arrived"] * (len(kinds) % 2)


moves = st.lists(
    st.tuples(
        st.floats(-30.0, 1200.0),  # seconds since the previous fix (negative: out of order)
        st.floats(-400.0, 400.0),  # metres north of the previous
        st.floats(0.0, 80.0),  # accuracy
        st.sampled_from(["cg1", "cg1", "cg1", "other"]),  # now and then someone else's fix
    ),
    max_size=25,
)


@given(moves=moves)
def test_segments_ahead_are_the_segments_fix_by_fix(
    moves: list[tuple[float, float, float, str]],
) -> None:
    """Asking for a batch's segments at once (to test them in one pass) gives each fix the
    segment it is given when fed one at a time."""
    fixes, t, north = [], T0, 0.0
    for dt, dn, acc, who in moves:
        t, north = t + dt, north + dn
        fixes.append(Fix(who, *at(north, 0.0), t, acc))
    trackers = {w: FenceTracker(w, last=Fix(w, *HOME, T0 - 60)) for w in ("cg1", "other")}
    ahead = segments_ahead(trackers, fixes)
    one_by_one: tuple[list[Segment | None], list[bool]] = ([], [])
    for fix in fixes:
        tracker = trackers[fix.caregiver_id]
        one_by_one[0].append(tracker.segment_to(fix))
        one_by_one[1].append(tracker.usable(fix))
        tracker.update(fix, {})
    assert ahead == one_by_one


def test_the_visits_batch_finds_the_same_passes_as_one_fix_at_a_time() -> None:
    """The fixes worker tests a whole batch's segments in one pass (``streams.visit_keeper``)."""
    index = FenceIndex([Fence.circle("home", "p1", "a1", *HOME, 60.0)])
    legs = [(-700.0, 5.0), (-250.0, 5.0), (250.0, 5.0), (700.0, 5.0)]
    batch = [
        event(who, f) for n, who in enumerate(["cg1", "cg2"]) for f in noisy_trace(legs, 30, 4, n)
    ]
    trackers = {who: FenceTracker(who) for who in ("cg1", "cg2")}
    moves = track_fixes(index, trackers, batch)
    got = {who: [(t.kind, t.fence_id) for t in m.transitions] for who, m in moves.items()}
    assert got == {"cg1": [("passed", "home")], "cg2": [("passed", "home")]}


def event(caregiver_id: str, f: Fix, agency_id: str = "a1") -> FixEvent:
    """A tracker's fix as the fixes topic carries it."""
    return FixEvent(
        event_id=f"{caregiver_id}:{f.ts}",
        agency_id=agency_id,
        caregiver_id=caregiver_id,
        lat=f.lat,
        lon=f.lon,
        ts=f.ts,
        acc=f.acc,
        received_at=f.ts,
    )


walks = st.lists(
    st.tuples(
        st.sampled_from(["cg1", "cg2", "cg3"]),  # interleaved caregivers
        st.floats(-30.0, 1000.0),  # seconds after her previous fix (negative: out of order)
        st.tuples(st.floats(-250.0, 250.0), st.floats(-250.0, 250.0)),  # metres moved
        st.sampled_from([5.0, 5.0, 20.0, 49.0, 70.0]),  # accuracy (70: too coarse)
    ),
    max_size=40,
)
homes = st.lists(
    st.tuples(
        st.tuples(st.floats(-600.0, 600.0), st.floats(-600.0, 600.0)),
        st.floats(20.0, 250.0),
        st.sampled_from(["a1", "a1", "a2"]),  # now and then another agency's home
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None)
@given(walk=walks, placed=homes)
def test_a_batch_moves_the_trackers_as_its_fixes_one_at_a_time_would(
    walk: list[tuple[str, float, tuple[float, float], float]],
    placed: list[tuple[tuple[float, float], float, str]],
) -> None:
    """``track_fixes`` over a whole batch gives each caregiver the transitions, last fix and
    fence states that feeding her fixes one by one gives (her own agency's homes only; coarse,
    late and repeated fixes change nothing)."""
    fences = [
        Fence.circle(f"h{i}", f"p{i}", agency, *at(*offset), radius)
        for i, (offset, radius, agency) in enumerate(placed)
    ]
    index = FenceIndex(fences)
    where = {who: (0.0, 0.0, T0) for who in ("cg1", "cg2", "cg3")}
    batch = []
    for who, dt, (dn, de), acc in walk:
        north, east, t = where[who]
        where[who] = (north + dn, east + de, t + dt)
        agency = "a2" if who == "cg3" else "a1"
        batch.append(event(who, Fix(who, *at(north + dn, east + de), t + dt, acc), agency))
    start = {"cg2": Fix("cg2", *at(-300.0, 0.0), T0 - 30)}  # cg2 has a last fix already

    def trackers() -> dict[str, FenceTracker]:
        return {w: FenceTracker(w, last=start.get(w)) for w in ("cg1", "cg2", "cg3")}

    together = trackers()
    moves = track_fixes(index, together, batch)
    alone = trackers()
    expected: dict[str, tuple[list[Transition], Fix | None]] = {}
    for f in batch:
        tracker, fix = alone[f.caregiver_id], Fix(f.caregiver_id, f.lat, f.lon, f.ts, f.acc or 0.0)
        if not tracker.usable(fix):
            continue
        segment = tracker.segment_to(fix)
        crossed = index.crossing(*segment) if segment is not None else set()
        own = {h for h in crossed if index.get(h).agency_id == f.agency_id}  # type: ignore[union-attr]
        relations = {
            h: r for h, r in index.relations_at(fix.lat, fix.lon, fix.acc).items()
            if index.get(h).agency_id == f.agency_id  # type: ignore[union-attr]
        }  # fmt: skip
        kinds = expected.get(f.caregiver_id, ([], None))[0]
        expected[f.caregiver_id] = (kinds + tracker.update(fix, relations, own), fix)
    assert {w: (m.transitions, m.last) for w, m in moves.items()} == expected
    for w in alone:
        assert together[w].fence_states() == alone[w].fence_states()
        assert together[w].last == alone[w].last
