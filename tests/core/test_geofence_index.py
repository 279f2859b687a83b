"""The fence index: its H3 prefilter misses nothing, and it agrees with a naive loop over fences."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from h3.api import basic_int as h3
from hypothesis import given, settings
from hypothesis import strategies as st

from careknot.bench import geofence as bench
from geofence.cover import DEFAULT_RESOLUTION, coverings
from geofence.fences import Fence, Relation
from geofence.geodesy import LocalFrame
from geofence.index import DEFAULT_REACH_M, FenceIndex
from kernel.settings import Settings

HOME = (53.8008, -1.5491)
REACH = DEFAULT_REACH_M


def at(origin: tuple[float, float], north_m: float, east_m: float) -> tuple[float, float]:
    lon, lat = LocalFrame(*origin).to_lonlat(east_m, north_m)
    return lat, lon


def polygon_around(fence_id: str, origin: tuple[float, float], radii: list[float]) -> Fence:
    """A star-shaped polygon: vertex ``i`` at ``radii[i]`` metres, evenly around ``origin``."""
    n = len(radii)
    ring = []
    for i, r in enumerate(radii):
        angle = 2 * math.pi * i / n
        lat, lon = at(origin, r * math.cos(angle), r * math.sin(angle))
        ring.append([lon, lat])
    geojson = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
    return Fence.polygon(fence_id, f"p-{fence_id}", "a1", geojson)


def naive(fences: list[Fence], lat: float, lon: float) -> set[str]:
    return {f.fence_id for f in fences if f.contains(lat, lon)}


# Fences within ~1.5 km of a point at UK latitudes: circles and star polygons, overlapping.
origins = st.tuples(st.floats(49.9, 60.8), st.floats(-7.5, 1.7))
offsets = st.tuples(st.floats(-1500, 1500), st.floats(-1500, 1500))
circle_specs = st.tuples(offsets, st.floats(5.0, 600.0))
polygon_specs = st.tuples(offsets, st.lists(st.floats(10.0, 400.0), min_size=3, max_size=9))


@st.composite
def scenes(draw: st.DrawFn) -> tuple[list[Fence], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Fences, and fixes: anywhere around them, and close to their edges (within ±2 m)."""
    origin = draw(origins)
    fences: list[Fence] = []
    for i, ((n, e), radius) in enumerate(draw(st.lists(circle_specs, max_size=25))):
        fences.append(Fence.circle(f"c{i}", f"p{i}", "a1", *at(origin, n, e), radius))
    for i, ((n, e), radii) in enumerate(draw(st.lists(polygon_specs, max_size=10))):
        fences.append(polygon_around(f"g{i}", at(origin, n, e), radii))
    points = [at(origin, n, e) for n, e in draw(st.lists(offsets, max_size=40))]
    for i, angle, delta in draw(
        st.lists(st.tuples(st.integers(0, 10**6), st.floats(0, 2 * math.pi), st.floats(-2, 2)))
    ):
        if fences:
            points.append(_near_edge(fences[i % len(fences)], angle, delta))
    lats = np.array([p[0] for p in points], dtype=np.float64)
    lons = np.array([p[1] for p in points], dtype=np.float64)
    return fences, lats, lons


def _near_edge(fence: Fence, angle: float, delta: float) -> tuple[float, float]:
    """A point ``delta`` metres beyond the fence's edge along a ray from its anchor."""
    low, high = 0.0, fence.radius_m * 1.01
    if fence.geometry is not None:  # a star polygon: find the edge along the ray by bisection
        for _ in range(40):
            mid = (low + high) / 2
            inside = fence.contains(*at((fence.lat, fence.lon), *_ray(angle, mid)))
            low, high = (mid, high) if inside else (low, mid)
    edge = high if fence.geometry is not None else fence.radius_m
    return at((fence.lat, fence.lon), *_ray(angle, edge + delta))


def _ray(angle: float, r: float) -> tuple[float, float]:
    return r * math.cos(angle), r * math.sin(angle)


# ---------------------------------------------------------------- the prefilter misses nothing


@settings(max_examples=60, deadline=None)
@given(
    origin=origins,
    radius=st.floats(1.0, 1500.0),
    north_frac=st.floats(-1.0, 1.0),
    east_frac=st.floats(-1.0, 1.0),
    resolution=st.sampled_from([8, 9, 10, 11]),
)
def test_every_point_within_reach_of_a_circle_falls_in_a_listed_cell(
    origin: tuple[float, float],
    radius: float,
    north_frac: float,
    east_frac: float,
    resolution: int,
) -> None:
    fence = Fence.circle("f", "p", "a", *origin, radius)
    cover = coverings([fence], resolution, REACH)
    # a point of the square around the fence, kept if within reach of the fence
    north, east = north_frac * (radius + REACH), east_frac * (radius + REACH)
    point = at(origin, north, east)
    if math.hypot(north, east) <= radius + REACH * 0.999:
        assert h3.latlng_to_cell(*point, resolution) in set(cover.cells.tolist())
    if fence.contains(*point):
        assert h3.latlng_to_cell(*point, resolution) in set(cover.cells[cover.core].tolist())


@settings(max_examples=40, deadline=None)
@given(
    origin=origins,
    radii=st.lists(st.floats(3.0, 800.0), min_size=3, max_size=12),
    angle=st.floats(0, 2 * math.pi),
    delta=st.floats(-REACH, REACH * 0.999),
)
def test_every_point_near_a_polygons_edge_falls_in_a_listed_cell(
    origin: tuple[float, float], radii: list[float], angle: float, delta: float
) -> None:
    fence = polygon_around("g", origin, radii)
    cover = coverings([fence], DEFAULT_RESOLUTION, REACH)
    point = _near_edge(fence, angle, delta)
    cell = h3.latlng_to_cell(*point, DEFAULT_RESOLUTION)
    if fence.contains(*point):
        assert cell in set(cover.cells[cover.core].tolist())
    if fence.distance_to_boundary_m(*point) <= REACH * 0.999:
        assert cell in set(cover.cells.tolist())


def test_a_fence_is_listed_under_few_cells() -> None:
    cover = coverings([Fence.circle("f", "p", "a", *HOME)], DEFAULT_RESOLUTION, REACH)
    assert 10 < cover.core.sum() < len(cover.cells) < 60


# ---------------------------------------------------------------- agreement with a naive loop


@settings(max_examples=60, deadline=None)
@given(scene=scenes())
def test_index_agrees_with_a_naive_loop(
    scene: tuple[list[Fence], np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    fences, lats, lons = scene
    index = FenceIndex(fences)
    got = index.evaluate_sets(lats, lons)
    assert got == [naive(fences, lat, lon) for lat, lon in zip(lats, lons, strict=True)]
    hits = index.evaluate(lats, lons)
    assert list(hits.fix) == sorted(hits.fix)


@settings(max_examples=40, deadline=None)
@given(scene=scenes(), acc=st.floats(0.0, REACH))
def test_classify_agrees_with_each_fence(
    scene: tuple[list[Fence], np.ndarray[Any, Any], np.ndarray[Any, Any]], acc: float
) -> None:
    fences, lats, lons = scene
    index = FenceIndex(fences)
    found = index.classify(lats, lons, np.full(len(lats), acc))
    got: list[dict[str, Relation]] = [{} for _ in lats]
    for i, fence_id, r in zip(found.fix, found.fence_id, found.relation, strict=True):
        got[i][fence_id] = Relation(r)
    for i, (lat, lon) in enumerate(zip(lats, lons, strict=True)):
        relations = {f.fence_id: f.relation(lat, lon, acc) for f in fences}
        assert got[i] == {k: r for k, r in relations.items() if r is not Relation.OUTSIDE}


@settings(max_examples=40, deadline=None)
@given(scene=scenes(), a=offsets, b=offsets)
def test_crossing_agrees_with_each_fence(
    scene: tuple[list[Fence], np.ndarray[Any, Any], np.ndarray[Any, Any]],
    a: tuple[float, float],
    b: tuple[float, float],
) -> None:
    fences, _, _ = scene
    if not fences:
        return
    origin = (fences[0].lat, fences[0].lon)
    (lat0, lon0), (lat1, lon1) = at(origin, *a), at(origin, *b)
    expected = {f.fence_id for f in fences if f.crosses(lat0, lon0, lat1, lon1)}
    assert FenceIndex(fences).crossing(lat0, lon0, lat1, lon1) == expected


# ---------------------------------------------------------------- changes without a rebuild


def test_upsert_replaces_and_remove_forgets() -> None:
    index = FenceIndex([Fence.circle("f1", "p1", "a1", *HOME)])
    far = at(HOME, 0.0, 1000.0)
    assert index.fences_at(*HOME) == {"f1"}
    index.upsert(Fence.circle("f1", "p1", "a1", *far, 100.0))
    assert index.fences_at(*HOME) == set()
    assert index.fences_at(*far) == {"f1"}
    index.upsert(Fence.circle("f2", "p2", "a1", *HOME))
    assert index.fences_at(*HOME) == {"f2"}
    assert index.remove("f1") and not index.remove("f1")
    assert index.fences_at(*far) == set()
    assert len(index) == 1 and "f2" in index and "f1" not in index
    assert index.get("f2") == Fence.circle("f2", "p2", "a1", *HOME)


def test_many_changes_compact_and_still_agree() -> None:
    rng = np.random.default_rng(3)
    index = FenceIndex(compact_after=16)
    fences: dict[str, Fence] = {}
    for step in range(200):
        fence_id = f"f{rng.integers(60)}"
        if step % 7 == 0:
            index.remove(fence_id)
            fences.pop(fence_id, None)
            continue
        n, e, r = rng.uniform(-800, 800), rng.uniform(-800, 800), rng.uniform(20, 300)
        fence = Fence.circle(fence_id, "p", "a", *at(HOME, n, e), r)
        index.upsert(fence)
        fences[fence_id] = fence
    points = [at(HOME, *rng.uniform(-1000, 1000, 2)) for _ in range(500)]
    lats, lons = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    expected = [naive(list(fences.values()), *p) for p in points]
    assert index.evaluate_sets(lats, lons) == expected
    assert len(index) == len(fences)
    index.compact()
    assert index.evaluate_sets(lats, lons) == expected


def test_single_fix_relations() -> None:
    index = FenceIndex([Fence.circle("f1", "p1", "a1", *HOME)])
    assert index.relations_at(*HOME, 10.0) == {"f1": Relation.INSIDE}
    assert index.relations_at(*at(HOME, 195.0, 0.0), 10.0) == {"f1": Relation.STRADDLES}
    assert index.relations_at(*at(HOME, 300.0, 0.0), 10.0) == {}


def test_empty_index_and_no_fixes() -> None:
    assert FenceIndex().evaluate_sets(np.array([HOME[0]]), np.array([HOME[1]])) == [set()]
    index = FenceIndex([Fence.circle("f1", "p1", "a1", *HOME)])
    assert index.evaluate_sets(np.zeros(0), np.zeros(0)) == []
    with pytest.raises(ValueError, match="reach_m"):
        FenceIndex(reach_m=0.0)


# ---------------------------------------------------------------- the benchmark, small


async def test_the_benchmark_writes_its_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "_pin_to_one_core", lambda: None)  # not the test process
    extra = ["--fences", "400", "--fixes", "3000", "--rounds", "1", "--naive-sample", "30"]
    args = argparse.Namespace(output=str(tmp_path), extra=extra)
    assert await bench.run(Settings(), args) == 0
    figures = json.loads((tmp_path / "bench-geofence.json").read_text())
    assert figures["disagreements"] == 0 and figures["fences"] == 400
    assert figures["evaluations_per_s"] > 0 and figures["speedup_vs_naive"] > 1


@settings(max_examples=40, deadline=None)
@given(scene=scenes(), ends=st.lists(st.tuples(offsets, offsets), min_size=1, max_size=6))
def test_crossings_of_many_segments_agree_with_each_fence(
    scene: tuple[list[Fence], np.ndarray[Any, Any], np.ndarray[Any, Any]],
    ends: list[tuple[tuple[float, float], tuple[float, float]]],
) -> None:
    """One pass over many segments (as the visits ask, a batch at a time) finds for each the
    fences it meets, as testing every fence would."""
    fences, _, _ = scene
    if not fences:
        return
    origin = (fences[0].lat, fences[0].lon)
    segments = [(*at(origin, *a), *at(origin, *b)) for a, b in ends]
    expected = [{f.fence_id for f in fences if f.crosses(*s)} for s in segments]
    assert FenceIndex(fences).crossings(segments) == expected


@settings(max_examples=40, deadline=None)
@given(
    scene=scenes(),
    owners=st.lists(st.sampled_from(["a1", "a2"]), min_size=35, max_size=35),
    asking=st.lists(st.sampled_from(["a1", "a2", "a3"]), min_size=1),
    ends=st.lists(st.tuples(offsets, offsets), min_size=1, max_size=6),
)
def test_asked_for_agencies_only_their_own_fences_answer(
    scene: tuple[list[Fence], np.ndarray[Any, Any], np.ndarray[Any, Any]],
    owners: list[str],
    asking: list[str],
    ends: list[tuple[tuple[float, float], tuple[float, float]]],
) -> None:
    """With an agency per fix (per segment), classify and crossings answer what they answer
    without, less the other agencies' fences."""
    shared, lats, lons = scene
    fences = [dataclasses.replace(f, agency_id=a) for f, a in zip(shared, owners, strict=False)]
    if not fences:
        return
    index, agency_of = FenceIndex(fences), {f.fence_id: f.agency_id for f in fences}
    per_fix = [asking[i % len(asking)] for i in range(len(lats))]
    accs = np.full(len(lats), 10.0)
    every, own = index.classify(lats, lons, accs), index.classify(lats, lons, accs, per_fix)
    expected = [
        (i, fence_id, r)
        for i, fence_id, r in zip(*(a.tolist() for a in every), strict=True)
        if agency_of[fence_id] == per_fix[i]
    ]
    assert list(zip(*(a.tolist() for a in own), strict=True)) == expected
    origin = (fences[0].lat, fences[0].lon)
    segments = [(*at(origin, *a), *at(origin, *b)) for a, b in ends]
    per_segment = [asking[i % len(asking)] for i in range(len(segments))]
    wanted = [
        {f for f in met if agency_of[f] == per_segment[i]}
        for i, met in enumerate(index.crossings(segments))
    ]
    assert index.crossings(segments, per_segment) == wanted
