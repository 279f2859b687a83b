"""Distances on the Earth for fences: the haversine term, and a fence's local metric frame.

A circle is tested by great-circle distance, through the haversine term ``h = sin²(d / 2R)``:
a point is within ``r`` metres of the centre exactly when ``h < sin²(r / 2R)``. ``h`` is a
quarter of the squared chord between the two points' unit vectors, so the vectorised test costs
a few multiplications per (fix, fence) pair, and the scalar and vectorised tests compare the
same numbers.

A polygon is tested in longitude/latitude (GeoJSON's straight edges); its distances in metres are
measured in a *local frame*: an equirectangular projection about the fence's own anchor. That map
is affine in (lon, lat), so it keeps straight edges straight and inside inside, and over the few
hundred metres of a home's fence its scale is right to about 1e-4 at UK latitudes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

EARTH_RADIUS_M = 6_371_008.8
METRES_PER_DEGREE_LAT = EARTH_RADIUS_M * math.pi / 180.0

FloatArray = npt.NDArray[np.float64]


def unit_vector(lat: float, lon: float) -> tuple[float, float, float]:
    """The point on the unit sphere at (lat, lon) degrees."""
    p, lam = math.radians(lat), math.radians(lon)
    return math.cos(p) * math.cos(lam), math.cos(p) * math.sin(lam), math.sin(p)


def unit_vectors(lats: FloatArray, lons: FloatArray) -> FloatArray:
    """``unit_vector`` for many points: an (n, 3) array."""
    p, lam = np.radians(lats), np.radians(lons)
    cos_p = np.cos(p)
    return np.column_stack([cos_p * np.cos(lam), cos_p * np.sin(lam), np.sin(p)])


def haversine_term(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """``sin²(d / 2R)`` for the great-circle distance ``d`` between two points (degrees): the
    haversine formula, the same number as a quarter of the squared chord between the points'
    unit vectors (:func:`chord_term`, which needs no trigonometry once the vectors are known)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    s_lat = math.sin((p2 - p1) / 2)
    s_lon = math.sin(math.radians(lon2 - lon1) / 2)
    return s_lat * s_lat + math.cos(p1) * math.cos(p2) * s_lon * s_lon


def chord_term(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """``haversine_term`` from two unit vectors: a quarter of the squared chord."""
    dx, dy, dz = a[0] - b[0], a[1] - b[1], a[2] - b[2]
    return (dx * dx + dy * dy + dz * dz) / 4


def haversine_terms(u: FloatArray, v: FloatArray) -> FloatArray:
    """``haversine_term`` row by row, between (n, 3) arrays of unit vectors."""
    d = u - v
    result: FloatArray = np.einsum("ij,ij->i", d, d) / 4
    return result


def term_of_distance(distance_m: float) -> float:
    """The haversine term of a great-circle distance: ``sin²(d / 2R)``."""
    s = math.sin(distance_m / (2 * EARTH_RADIUS_M))
    return s * s


def distance_of_terms(h: FloatArray) -> FloatArray:
    """Great-circle distances (metres) from haversine terms."""
    result: FloatArray = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    return result


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points, in metres."""
    h = haversine_term(lat1, lon1, lat2, lon2)
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def haversine_m_arrays(
    lat1: FloatArray, lon1: FloatArray, lat2: FloatArray, lon2: FloatArray
) -> FloatArray:
    """``haversine_m`` elementwise, in the same operations."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    s_lat = np.sin((p2 - p1) / 2)
    s_lon = np.sin(np.radians(lon2 - lon1) / 2)
    h = s_lat * s_lat + np.cos(p1) * np.cos(p2) * s_lon * s_lon
    result: FloatArray = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(h)))
    return result


class LocalFrame(NamedTuple):
    """Metres east (x) and north (y) of an anchor, equirectangular about it."""

    lat0: float
    lon0: float

    @property
    def metres_per_degree_lon(self) -> float:
        return METRES_PER_DEGREE_LAT * math.cos(math.radians(self.lat0))

    def to_local(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self.lon0) * self.metres_per_degree_lon, (
            lat - self.lat0
        ) * METRES_PER_DEGREE_LAT

    def to_local_arrays(self, lats: FloatArray, lons: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``to_local`` elementwise."""
        xs: FloatArray = (lons - self.lon0) * self.metres_per_degree_lon
        ys: FloatArray = (lats - self.lat0) * METRES_PER_DEGREE_LAT
        return xs, ys

    def to_lonlat(self, x: float, y: float) -> tuple[float, float]:
        return self.lon0 + x / self.metres_per_degree_lon, self.lat0 + y / METRES_PER_DEGREE_LAT
