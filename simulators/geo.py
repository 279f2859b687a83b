"""Pure geometry for the simulated city: distances, bearings and small offsets on the Earth.

Distances are great-circle (haversine) metres; offsets use a local flat-Earth approximation,
which is a few metres wrong at most over the ten kilometres a city spans.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

from geofence.geodesy import EARTH_RADIUS_M, haversine_m


class Point(NamedTuple):
    lat: float
    lon: float


def distance_m(a: Point, b: Point) -> float:
    """Great-circle distance between two points, in metres."""
    return haversine_m(a.lat, a.lon, b.lat, b.lon)


def bearing_deg(a: Point, b: Point) -> float:
    """Initial course from ``a`` to ``b``, degrees clockwise from north in [0, 360)."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlon = math.radians(b.lon - a.lon)
    y = math.sin(dlon) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(dlon)
    return math.degrees(math.atan2(y, x)) % 360.0


def offset(p: Point, north_m: float, east_m: float) -> Point:
    """The point ``north_m`` metres north and ``east_m`` metres east of ``p``."""
    dlat = math.degrees(north_m / EARTH_RADIUS_M)
    dlon = math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(p.lat))))
    return Point(p.lat + dlat, p.lon + dlon)


def lerp(a: Point, b: Point, fraction: float) -> Point:
    """The point ``fraction`` of the way along the straight line from ``a`` to ``b``."""
    f = min(1.0, max(0.0, fraction))
    return Point(a.lat + (b.lat - a.lat) * f, a.lon + (b.lon - a.lon) * f)


def random_point(rng: random.Random, centre: Point, radius_m: float) -> Point:
    """A point within ``radius_m`` of ``centre``, denser towards the centre like a real city."""
    r = radius_m * rng.random() ** 0.7
    theta = rng.uniform(0.0, 2 * math.pi)
    return offset(centre, r * math.cos(theta), r * math.sin(theta))
