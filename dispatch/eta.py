"""Distance and travel time. ``TravelModel`` is the seam where a routing engine plugs in."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


class TravelModel(Protocol):
    def eta_s(self, distance_m: float) -> float: ...


@dataclass(frozen=True, slots=True)
class StraightLineModel:
    """Straight-line distance stretched by a detour factor, at an urban driving speed."""

    speed_kmh: float = 30.0
    detour: float = 1.3

    def eta_s(self, distance_m: float) -> float:
        return distance_m * self.detour / (self.speed_kmh / 3.6)
