"""Fences: validation of circles and GeoJSON polygons, and the exact tests an index must match."""

from __future__ import annotations

from typing import Any

import pytest

from geofence.fences import Fence, InvalidFence, Relation
from geofence.geodesy import LocalFrame, haversine_m

HOME = (53.8008, -1.5491)


def square(lat: float, lon: float, half_m: float) -> dict[str, Any]:
    """A GeoJSON square of side ``2 * half_m`` metres centred on (lat, lon)."""
    frame = LocalFrame(lat, lon)
    corners = [(-half_m, -half_m), (half_m, -half_m), (half_m, half_m), (-half_m, half_m)]
    ring = [list(frame.to_lonlat(x, y)) for x, y in corners]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def at(north_m: float, east_m: float, origin: tuple[float, float] = HOME) -> tuple[float, float]:
    lon, lat = LocalFrame(*origin).to_lonlat(east_m, north_m)
    return lat, lon


def polygon(geojson: Any) -> Fence:
    return Fence.polygon("f1", "p1", "a1", geojson)


# ---------------------------------------------------------------- validation


RING = [[-1.55, 53.80], [-1.54, 53.80], [-1.54, 53.81], [-1.55, 53.80]]
BOWTIE = [[-1.55, 53.80], [-1.549, 53.801], [-1.549, 53.80], [-1.55, 53.801], [-1.55, 53.80]]


@pytest.mark.parametrize(
    ("geojson", "reason"),
    [
        ("not a dict", "fence_bad_geojson"),
        ({"type": "Point", "coordinates": [-1.5, 53.8]}, "fence_bad_geojson"),
        ({"type": "Polygon"}, "fence_bad_geojson"),
        ({"type": "Polygon", "coordinates": []}, "fence_bad_geojson"),
        ({"type": "Polygon", "coordinates": [RING[:3]]}, "fence_bad_geojson"),  # not closed
        ({"type": "Polygon", "coordinates": [[*RING[:3], [-1.55, 53.9]]]}, "fence_bad_geojson"),
        ({"type": "Polygon", "coordinates": [[[-1.55], *RING[1:]]]}, "fence_bad_geojson"),
        ({"type": "Polygon", "coordinates": [[["x", 53.8], *RING[1:]]]}, "fence_bad_geojson"),
        ({"type": "Polygon", "coordinates": [[[True, 53.8], *RING[1:]]]}, "fence_bad_geojson"),
        ({"type": "Polygon", "coordinates": [[[-1.55, 91.0], *RING[1:]]]}, "fence_bad_geojson"),
        (
            {"type": "Polygon", "coordinates": [[[float("nan"), 53.8], *RING[1:]]]},
            "fence_bad_geojson",
        ),
        ({"type": "Polygon", "coordinates": [BOWTIE]}, "fence_invalid_geometry"),
        ({"type": "MultiPolygon", "coordinates": []}, "fence_bad_geojson"),
        ({"type": "MultiPolygon", "coordinates": [RING]}, "fence_bad_geojson"),
        (
            {"type": "Polygon", "coordinates": [[[-1.6, 53.8], *RING[1:3], [-1.6, 53.8]]]},
            "fence_too_large",
        ),
        (square(*HOME, 1500.0), "fence_too_large"),
    ],
)
def test_bad_geojson_is_rejected_with_a_reason(geojson: Any, reason: str) -> None:
    with pytest.raises(InvalidFence) as caught:
        polygon(geojson)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"radius_m": 0.0}, "fence_bad_radius"),
        ({"radius_m": -5.0}, "fence_bad_radius"),
        ({"radius_m": 5000.0}, "fence_bad_radius"),
        ({"radius_m": float("nan")}, "fence_bad_radius"),
        ({"lat": 95.0}, "fence_bad_centre"),
        ({"lon": float("inf")}, "fence_bad_centre"),
        ({"fence_id": ""}, "fence_bad_id"),
    ],
)
def test_bad_circles_are_rejected(kwargs: dict[str, Any], reason: str) -> None:
    args: dict[str, Any] = {
        "fence_id": "f1",
        "patient_id": "p1",
        "agency_id": "a1",
        "lat": HOME[0],
        "lon": HOME[1],
    }
    with pytest.raises(InvalidFence) as caught:
        Fence.circle(**(args | kwargs))
    assert caught.value.reason == reason


def test_a_circle_defaults_to_200_m() -> None:
    assert Fence.circle("f1", "p1", "a1", *HOME).radius_m == 200.0


def test_multipolygon_with_a_hole_and_altitudes() -> None:
    outer = square(*HOME, 60.0)["coordinates"][0]
    hole = square(*HOME, 20.0)["coordinates"][0][::-1]
    other = square(*at(0.0, 300.0), 30.0)["coordinates"][0]
    with_alt = [[*p, 80.0] for p in other]
    fence = polygon({"type": "MultiPolygon", "coordinates": [[outer, hole], [with_alt]]})
    assert fence.contains(*at(40.0, 0.0))
    assert not fence.contains(*HOME)  # in the hole
    assert fence.contains(*at(0.0, 300.0))
    assert not fence.contains(*at(0.0, 150.0))


# ---------------------------------------------------------------- exact tests


@pytest.mark.parametrize(
    ("north", "east", "inside"),
    [(0.0, 0.0, True), (199.0, 0.0, True), (0.0, -199.0, True), (201.0, 0.0, False),
     (141.0, 141.0, True), (142.0, 142.0, False), (0.0, 500.0, False)],
)  # fmt: skip
def test_circle_contains_by_great_circle_distance(north: float, east: float, inside: bool) -> None:
    fence = Fence.circle("f1", "p1", "a1", *HOME)
    point = at(north, east)
    assert fence.contains(*point) is inside
    assert fence.distance_to_boundary_m(*point) == pytest.approx(
        abs(haversine_m(*point, *HOME) - 200.0), abs=1e-6
    )


@pytest.mark.parametrize(
    ("north", "east", "acc", "relation"),
    [
        (0.0, 0.0, 20.0, Relation.INSIDE),
        (170.0, 0.0, 20.0, Relation.INSIDE),
        (190.0, 0.0, 20.0, Relation.STRADDLES),
        (210.0, 0.0, 20.0, Relation.STRADDLES),
        (230.0, 0.0, 20.0, Relation.OUTSIDE),
        (190.0, 0.0, 0.0, Relation.INSIDE),
    ],
)
def test_circle_relation_with_accuracy(
    north: float, east: float, acc: float, relation: Relation
) -> None:
    assert Fence.circle("f1", "p1", "a1", *HOME).relation(*at(north, east), acc) is relation


@pytest.mark.parametrize(
    ("north", "east", "acc", "relation"),
    [
        (0.0, 0.0, 30.0, Relation.INSIDE),
        (35.0, 0.0, 10.0, Relation.INSIDE),
        (45.0, 0.0, 10.0, Relation.STRADDLES),
        (0.0, 55.0, 10.0, Relation.STRADDLES),
        (0.0, 61.0, 10.0, Relation.OUTSIDE),
        (65.0, 65.0, 10.0, Relation.OUTSIDE),
    ],
)
def test_polygon_relation_with_accuracy(
    north: float, east: float, acc: float, relation: Relation
) -> None:
    fence = polygon(square(*HOME, 50.0))
    assert fence.relation(*at(north, east), acc) is relation
    assert fence.radius_m == pytest.approx(50.0 * 2**0.5, rel=1e-3)


@pytest.mark.parametrize(
    ("a", "b", "crosses"),
    [
        ((-300.0, 0.0), (300.0, 0.0), True),  # straight through
        ((-300.0, 150.0), (300.0, 150.0), True),  # a chord
        ((-300.0, 250.0), (300.0, 250.0), False),  # beside it
        ((-300.0, 0.0), (-250.0, 0.0), False),  # short of it
    ],
)
def test_segment_crossing(a: tuple[float, float], b: tuple[float, float], crosses: bool) -> None:
    for fence in (Fence.circle("f1", "p1", "a1", *HOME), polygon(square(*HOME, 200.0))):
        assert fence.crosses(*at(*a), *at(*b)) is crosses
