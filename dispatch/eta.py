"""Travel time. ``TravelModel`` is the seam where a routing engine plugs in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from geofence.geodesy import haversine_m

__all__ = ["StraightLineModel", "TravelModel", "haversine_m"]


class TravelModel(Protocol):
    def eta_s(self, distance_m: float) -> float: ...


@dataclass(frozen=True, slots=True)
class StraightLineModel:
    """Straight-line distance stretched by a detour factor, at an urban driving speed."""

    speed_kmh: float = 30.0
    detour: float = 1.3

    def eta_s(self, distance_m: float) -> float:
        return distance_m * self.detour / (self.speed_kmh / 3.6)
