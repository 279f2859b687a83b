"""A patient's home as a fence: a circle or a GeoJSON polygon, validated, and its exact tests.

``Fence`` owns the one true answer for a point (``contains``, ``distance_to_boundary_m``,
``relation`` for a fix with an accuracy radius, ``crosses`` for a straight segment); the index
answers the same questions for many fixes at once and must agree with these.

Circles are tested by great-circle distance from their centre. Polygons are tested with shapely
in longitude/latitude; their distances in metres in the fence's local frame (see ``geodesy``).
Bad input raises :class:`InvalidFence` with a stable ``reason``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geofence.geodesy import (
    METRES_PER_DEGREE_LAT,
    FloatArray,
    LocalFrame,
    chord_term,
    haversine_m,
    term_of_distance,
    unit_vector,
)


class InvalidFence(ValueError):
    """A fence that cannot be built; ``reason`` is a stable, machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


DEFAULT_RADIUS_M = 200.0
MAX_EXTENT_M = 2_000.0
"""No point of a fence lies farther than this from its anchor: a home, not a district."""


class Relation(IntEnum):
    """Where a fix's accuracy circle lies with respect to a fence."""

    OUTSIDE = 0
    """Wholly outside."""
    INSIDE = 1
    """Wholly inside."""
    STRADDLES = 2
    """Across the boundary: the fix cannot tell."""


@dataclass(frozen=True, slots=True)
class Fence:
    """A patient's home: a circle about (``lat``, ``lon``) or a polygon anchored there.

    For a polygon, ``radius_m`` is the distance from the anchor to its farthest vertex, and
    ``geometry`` (lon/lat) and ``local`` (metres in the anchor's frame) hold its shape.
    """

    fence_id: str
    patient_id: str
    agency_id: str
    lat: float
    lon: float
    radius_m: float = DEFAULT_RADIUS_M
    geometry: BaseGeometry | None = field(default=None, compare=False, repr=False)
    local: BaseGeometry | None = field(default=None, compare=False, repr=False)
    _unit: tuple[float, float, float] = field(init=False, compare=False, repr=False)
    _threshold: float = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_unit", unit_vector(self.lat, self.lon))
        object.__setattr__(self, "_threshold", term_of_distance(self.radius_m))

    @classmethod
    def circle(
        cls,
        fence_id: str,
        patient_id: str,
        agency_id: str,
        lat: float,
        lon: float,
        radius_m: float = DEFAULT_RADIUS_M,
    ) -> Fence:
        _check_ids(fence_id, patient_id, agency_id)
        _check_position(lat, lon, "fence_bad_centre")
        if not (isinstance(radius_m, int | float) and 0.0 < radius_m <= MAX_EXTENT_M):
            raise InvalidFence("fence_bad_radius", f"radius must be in (0, {MAX_EXTENT_M}] m")
        return cls(fence_id, patient_id, agency_id, float(lat), float(lon), float(radius_m))

    @classmethod
    def polygon(cls, fence_id: str, patient_id: str, agency_id: str, geojson: Any) -> Fence:
        """A fence from a GeoJSON ``Polygon`` or ``MultiPolygon`` (RFC 7946, lon/lat)."""
        _check_ids(fence_id, patient_id, agency_id)
        geometry = parse_geojson(geojson)
        anchor = geometry.centroid
        frame = LocalFrame(anchor.y, anchor.x)
        local = shapely.transform(geometry, lambda xy: _project(frame, xy))
        extent = float(np.hypot(*shapely.get_coordinates(local).T).max())
        if extent > MAX_EXTENT_M:
            raise InvalidFence("fence_too_large", f"{extent:.0f} m from its centre")
        shapely.prepare(geometry)
        shapely.prepare(local)
        return cls(fence_id, patient_id, agency_id, anchor.y, anchor.x, extent, geometry, local)

    @property
    def is_circle(self) -> bool:
        return self.geometry is None

    @property
    def frame(self) -> LocalFrame:
        return LocalFrame(self.lat, self.lon)

    def contains(self, lat: float, lon: float) -> bool:
        """Whether the point lies strictly inside the fence."""
        if self.geometry is None:
            return chord_term(unit_vector(lat, lon), self._unit) < self._threshold
        return bool(shapely.contains_xy(self.geometry, lon, lat))

    def distance_to_boundary_m(self, lat: float, lon: float) -> float:
        """Metres from the point to the fence's edge, inside or out."""
        if self.local is None:
            return abs(haversine_m(lat, lon, self.lat, self.lon) - self.radius_m)
        x, y = self.frame.to_local(lat, lon)
        return float(shapely.distance(self.local.boundary, shapely.Point(x, y)))

    def relation(self, lat: float, lon: float, acc_m: float) -> Relation:
        """Where a fix with accuracy radius ``acc_m`` lies: a circle across the edge straddles."""
        if self.distance_to_boundary_m(lat, lon) < acc_m:
            return Relation.STRADDLES
        return Relation.INSIDE if self.contains(lat, lon) else Relation.OUTSIDE

    def crosses(self, lat0: float, lon0: float, lat1: float, lon1: float) -> bool:
        """Whether the straight segment between two points meets the fence."""
        frame = self.frame
        a, b = frame.to_local(lat0, lon0), frame.to_local(lat1, lon1)
        if self.local is None:
            return _segment_distance2(a, b) < self.radius_m * self.radius_m
        return bool(shapely.intersects(self.local, shapely.LineString([a, b])))


def parse_geojson(obj: Any) -> BaseGeometry:
    """A valid shapely (Multi)Polygon from a GeoJSON dict, or ``InvalidFence``."""
    if not isinstance(obj, dict):
        raise InvalidFence("fence_bad_geojson", "a GeoJSON object is a JSON object")
    kind, coords = obj.get("type"), obj.get("coordinates")
    if kind == "Polygon":
        geometry: BaseGeometry = shapely.Polygon(*_polygon_rings(coords))
    elif kind == "MultiPolygon":
        polygons = [shapely.Polygon(*_polygon_rings(p)) for p in _list(coords, "polygons")]
        if not polygons:
            raise InvalidFence("fence_bad_geojson", "a MultiPolygon needs a polygon")
        geometry = shapely.MultiPolygon(polygons)
    else:
        raise InvalidFence("fence_bad_geojson", f"type must be Polygon or MultiPolygon: {kind!r}")
    if not shapely.is_valid(geometry) or geometry.is_empty or geometry.area <= 0:
        raise InvalidFence("fence_invalid_geometry", shapely.is_valid_reason(geometry))
    return geometry


def _polygon_rings(
    coords: Any,
) -> tuple[list[tuple[float, float]], list[list[tuple[float, float]]]]:
    rings = [_ring(r) for r in _list(coords, "rings")]
    if not rings:
        raise InvalidFence("fence_bad_geojson", "a polygon needs an exterior ring")
    return rings[0], rings[1:]


def _ring(coords: Any) -> list[tuple[float, float]]:
    ring = [_position(p) for p in _list(coords, "positions")]
    if len(ring) < 4 or ring[0] != ring[-1]:
        raise InvalidFence("fence_bad_geojson", "a ring is closed and has at least 4 positions")
    return ring


def _position(p: Any) -> tuple[float, float]:
    if not isinstance(p, list | tuple) or len(p) not in (2, 3):
        raise InvalidFence("fence_bad_geojson", f"a position is [lon, lat]: {p!r}")
    lon, lat = p[0], p[1]
    _check_position(lat, lon, "fence_bad_geojson")
    return float(lon), float(lat)


def _list(value: Any, what: str) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        raise InvalidFence("fence_bad_geojson", f"{what} must be a list")
    return value


def _check_position(lat: Any, lon: Any, reason: str) -> None:
    for v in (lat, lon):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise InvalidFence(reason, f"not a coordinate: {v!r}")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise InvalidFence(reason, f"out of range: lat {lat}, lon {lon}")


def _check_ids(*ids: Any) -> None:
    if not all(isinstance(i, str) and i for i in ids):
        raise InvalidFence("fence_bad_id", "fence, patient and agency ids are non-empty strings")


def _project(frame: LocalFrame, lonlat: FloatArray) -> FloatArray:
    """(lon, lat) rows to metres east and north in ``frame``."""
    scale = np.array([frame.metres_per_degree_lon, METRES_PER_DEGREE_LAT])
    result: FloatArray = (lonlat - np.array([frame.lon0, frame.lat0])) * scale
    return result


def _segment_distance2(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Squared distance from the origin to the segment ``ab`` (plane): the same operations,
    in the same order, as ``geofence.index``'s test of many segments, so both agree exactly."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, -(a[0] * dx + a[1] * dy) / length2))
    ex, ey = a[0] + t * dx, a[1] + t * dy
    return ex * ex + ey * ey
