"""What the index's exact test needs per fence, by slot: numpy columns that grow by doubling.

A slot is a fence's row; a replaced or removed fence's slot is marked ``DEAD`` until the index
compacts, which keeps only the living slots and renumbers them in order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from geofence.fences import Fence
from geofence.geodesy import term_of_distance, unit_vector

CIRCLE, POLYGON, DEAD = 0, 1, 2


class Columns:
    """What the exact test needs per fence slot, as arrays that grow by doubling.

    ``unit``: the centre's (anchor's) unit vector; ``threshold``: a circle's haversine term;
    ``anchor``: lat, lon and cos(lat) of the local frame; ``box``: a polygon's lon/lat bounds.
    """

    def __init__(self) -> None:
        self.size = 0
        self.arrays: dict[str, npt.NDArray[Any]] = {
            "kind": np.full(0, DEAD, dtype=np.int8),
            "unit": np.zeros((0, 3)),
            "threshold": np.zeros(0),
            "radius": np.zeros(0),
            "anchor": np.zeros((0, 3)),
            "box": np.zeros((0, 4)),
            "fence": np.empty(0, dtype=object),  # the Fence
            "id": np.empty(0, dtype=object),  # its fence_id
            "agency": np.empty(0, dtype=object),  # its agency_id
            "geometry": np.empty(0, dtype=object),  # prepared lon/lat polygon
            "outline": np.empty(0, dtype=object),  # prepared boundary in the local frame
        }

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        return self.arrays[name]

    def append(self, fence: Fence) -> int:
        if self.size == len(self.arrays["kind"]):
            self._grow(max(64, 2 * self.size))
        slot, self.size = self.size, self.size + 1
        a = self.arrays
        a["kind"][slot] = CIRCLE if fence.local is None else POLYGON
        a["unit"][slot] = unit_vector(fence.lat, fence.lon)
        a["threshold"][slot] = term_of_distance(fence.radius_m)
        a["radius"][slot] = fence.radius_m
        a["anchor"][slot] = (fence.lat, fence.lon, math.cos(math.radians(fence.lat)))
        a["fence"][slot], a["id"][slot] = fence, fence.fence_id
        a["agency"][slot] = fence.agency_id
        if fence.geometry is not None and fence.local is not None:
            a["box"][slot] = fence.geometry.bounds
            a["geometry"][slot], a["outline"][slot] = fence.geometry, fence.local.boundary
            shapely.prepare(a["outline"][slot])
        return slot

    def kill(self, slot: int) -> None:
        a = self.arrays
        a["kind"][slot] = DEAD
        a["fence"][slot] = a["geometry"][slot] = a["outline"][slot] = a["agency"][slot] = None

    def _grow(self, capacity: int) -> None:
        for name, array in self.arrays.items():
            extra = np.zeros((capacity - len(array), *array.shape[1:]), dtype=array.dtype)
            if name == "kind":
                extra[:] = DEAD
            elif array.dtype == object:
                extra[:] = None
            self.arrays[name] = np.concatenate([array, extra])

    def keep(self, alive: npt.NDArray[np.bool_]) -> None:
        """Keep only the ``alive`` slots among the first ``size``, renumbered in order."""
        self.arrays = {name: a[: self.size][alive] for name, a in self.arrays.items()}
        self.size = int(alive.sum())
