"""The H3 cells each fence is listed under in the index's prefilter, and the cells of fixes.

A fence is listed under every cell whose *centre* lies within ``margin`` of the fence, where
``margin = circumradius + reach``. That misses no fix: a fix ``p`` within ``reach`` of the fence
lies in a cell ``c`` whose centre is at most ``circumradius(c)`` from ``p`` (a hexagon's farthest
point from its centre is a vertex), hence within ``margin`` of the fence, so ``c`` is listed.
The circumradius is the largest among a sample of the cells of the fence's region (its cell's
ancestor four resolutions up, a few kilometres across), taken 10 % larger plus a metre, which
absorbs how H3 cells vary in size over a region and the local frame's small error.

Cells to test come from ``grid_disk`` about the fence's cell, wide enough to hold every cell
whose centre is within ``radius + margin``: neighbouring centres are at least ``1.5 * edge``
apart per ring (edge = circumradius for a hexagon).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import shapely
from h3.api import basic_int as h3

from geofence.fences import Fence
from geofence.geodesy import (
    EARTH_RADIUS_M,
    METRES_PER_DEGREE_LAT,
    FloatArray,
    haversine_m,
    haversine_terms,
    unit_vectors,
)

CellArray = npt.NDArray[np.uint64]
IntArray = npt.NDArray[np.int64]

DEFAULT_RESOLUTION = 10
"""Cells of about 76 m edge: a 200 m home is listed under a few dozen."""


def coverings(
    fences: Sequence[Fence], resolution: int, reach_m: float
) -> tuple[CellArray, IntArray]:
    """The cells a fix within ``reach_m`` of each fence can fall in (and a few more).

    Flat: ``(cells, owners)`` where ``owners[i]`` is the position in ``fences`` of the fence
    listed under ``cells[i]``. Done for all fences at once, since most of the work is numpy.
    """
    anchors = [h3.latlng_to_cell(f.lat, f.lon, resolution) for f in fences]
    circum = np.array([_circumradius_m(a) * 1.1 + 1.0 for a in anchors])
    radii = np.array([f.radius_m for f in fences], dtype=np.float64)
    margins = circum + reach_m
    rings = np.ceil((radii + margins + circum) / (1.25 * circum)).astype(int).tolist()
    disks = [h3.grid_disk(a, k) for a, k in zip(anchors, rings, strict=True)]
    cells = np.fromiter(itertools.chain.from_iterable(disks), dtype=np.uint64)
    owners = np.repeat(np.arange(len(fences)), [len(d) for d in disks])
    keep = _near(fences, cells, owners, margins)
    return cells[keep], owners[keep]


def cells_of(
    lats: npt.NDArray[np.float64], lons: npt.NDArray[np.float64], resolution: int
) -> CellArray:
    """Each fix's cell, as unsigned 64-bit H3 indexes."""
    cell = h3.latlng_to_cell
    pairs = zip(lats.tolist(), lons.tolist(), strict=True)
    return np.fromiter((cell(a, b, resolution) for a, b in pairs), dtype=np.uint64, count=len(lats))


def _near(
    fences: Sequence[Fence], cells: CellArray, owners: IntArray, margins: FloatArray
) -> npt.NDArray[np.bool_]:
    """Which cells have their centre within its owner's margin of its owner (inside counts)."""
    lats, lons = _centres(cells)
    keep = np.zeros(len(cells), dtype=bool)
    circles = np.array([f.local is None for f in fences], dtype=bool)[owners]
    if circles.any():
        keep[circles] = _near_circles(fences, lats, lons, owners, margins, circles)
    if not circles.all():
        polygons = ~circles
        keep[polygons] = _near_polygons(fences, lats, lons, owners, margins, polygons)
    return keep


def _near_circles(
    fences: Sequence[Fence],
    lats: FloatArray,
    lons: FloatArray,
    owners: IntArray,
    margins: FloatArray,
    which: npt.NDArray[np.bool_],
) -> npt.NDArray[np.bool_]:
    mine = owners[which]
    lat0 = np.array([f.lat for f in fences])[mine]
    lon0 = np.array([f.lon for f in fences])[mine]
    reach = np.array([f.radius_m for f in fences])[mine] + margins[mine]
    h = haversine_terms(unit_vectors(lats[which], lons[which]), unit_vectors(lat0, lon0))
    limit = np.sin(reach / (2 * EARTH_RADIUS_M)) ** 2
    return np.asarray(h <= limit)


def _near_polygons(
    fences: Sequence[Fence],
    lats: FloatArray,
    lons: FloatArray,
    owners: IntArray,
    margins: FloatArray,
    which: npt.NDArray[np.bool_],
) -> npt.NDArray[np.bool_]:
    mine = owners[which]
    lat0 = np.array([f.lat for f in fences])[mine]
    lon0 = np.array([f.lon for f in fences])[mine]
    xs = (lons[which] - lon0) * (METRES_PER_DEGREE_LAT * np.cos(np.radians(lat0)))
    ys = (lats[which] - lat0) * METRES_PER_DEGREE_LAT
    shapes = np.array([f.local for f in fences], dtype=object)[mine]
    return np.asarray(shapely.dwithin(shapes, shapely.points(xs, ys), margins[mine]))


def _centres(cells: CellArray) -> tuple[FloatArray, FloatArray]:
    unique, back = np.unique(cells, return_inverse=True)
    points = [h3.cell_to_latlng(c) for c in unique.tolist()]
    lats = np.fromiter((p[0] for p in points), dtype=np.float64, count=len(points))
    lons = np.fromiter((p[1] for p in points), dtype=np.float64, count=len(points))
    return lats[back], lons[back]


def _circumradius_m(cell: int) -> float:
    """A cell's farthest vertex from its centre; the same for every cell of one region."""
    region = h3.cell_to_parent(cell, max(0, h3.get_resolution(cell) - 4))
    return _region_circumradius_m(region, h3.get_resolution(cell))


@lru_cache(maxsize=4096)
def _region_circumradius_m(region: int, resolution: int) -> float:
    cells = [h3.cell_to_center_child(region, resolution)]
    cells += [c for c in h3.cell_to_children(region, resolution)][::97]
    return max(_own_circumradius_m(c) for c in cells)


def _own_circumradius_m(cell: int) -> float:
    lat, lon = h3.cell_to_latlng(cell)
    return max(haversine_m(lat, lon, a, b) for a, b in h3.cell_to_boundary(cell))
