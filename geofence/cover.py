"""The H3 cells each fence is listed under in the index's prefilter, and the cells of fixes.

A fence is listed under every cell whose *centre* lies within ``circumradius + reach`` of the
fence, and the cell is *core* if its centre lies within ``circumradius``. That misses no fix: a
fix ``p`` in a cell ``c`` is at most ``circumradius(c)`` from the centre of ``c`` (a hexagon's
farthest point from its centre is a vertex), so if ``p`` is inside the fence, ``c`` is core, and
if ``p`` is within ``reach`` of the fence, ``c`` is listed.
The circumradius is the largest among a sample of the cells of the fence's region (its cell's
ancestor four resolutions up, a few kilometres across), taken 10 % larger plus a metre, which
absorbs how H3 cells vary in size over a region and the local frame's small error.

Cells to test come from ``grid_disk`` about the fence's cell, wide enough to hold every cell
whose centre is within ``radius + reach + circumradius`` of the fence's anchor: each ring of a
hexagon grid lies at least ``1.5 * edge`` farther out (edge = circumradius for a hexagon),
taken with a 20 % allowance for H3's distortion.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import shapely
from h3.api import basic_int as h3

from geofence.fences import Fence
from geofence.geodesy import (
    METRES_PER_DEGREE_LAT,
    FloatArray,
    distance_of_terms,
    haversine_m,
    haversine_terms,
    unit_vectors,
)

CellArray = npt.NDArray[np.uint64]
IntArray = npt.NDArray[np.int64]

DEFAULT_RESOLUTION = 10
"""Cells of about 76 m edge: a 200 m home is listed under a few dozen."""


class Cover(NamedTuple):
    """Flat: fence ``owners[i]`` (a position in the list given) is listed under ``cells[i]``;
    ``core[i]`` if a fix inside the fence can fall in that cell, else only one within reach."""

    cells: CellArray
    owners: IntArray
    core: npt.NDArray[np.bool_]


def coverings(fences: Sequence[Fence], resolution: int, reach_m: float) -> Cover:
    """The cells a fix inside, or within ``reach_m`` of, each fence can fall in (and a few
    more), for all the fences at once, since most of the work is numpy."""
    anchors = [h3.latlng_to_cell(f.lat, f.lon, resolution) for f in fences]
    circum = np.array([_circumradius_m(a) * 1.1 + 1.0 for a in anchors])
    radii = np.array([f.radius_m for f in fences], dtype=np.float64)
    rings = np.ceil((radii + reach_m + 2 * circum) / (1.25 * circum)).astype(int).tolist()
    disks = [h3.grid_disk(a, k) for a, k in zip(anchors, rings, strict=True)]
    cells = np.fromiter(itertools.chain.from_iterable(disks), dtype=np.uint64)
    owners = np.repeat(np.arange(len(fences)), [len(d) for d in disks])
    distance = _distances(fences, cells, owners)
    keep = distance <= circum[owners] + reach_m
    return Cover(cells[keep], owners[keep], (distance <= circum[owners])[keep])


def cells_of(lats: FloatArray, lons: FloatArray, resolution: int) -> CellArray:
    """Each fix's cell, as unsigned 64-bit H3 indexes."""
    cells = map(h3.latlng_to_cell, lats.tolist(), lons.tolist(), itertools.repeat(resolution))
    return np.fromiter(cells, dtype=np.uint64, count=len(lats))


def _distances(fences: Sequence[Fence], cells: CellArray, owners: IntArray) -> FloatArray:
    """Metres from each cell's centre to its owner fence (0 inside)."""
    lats, lons = _centres(cells)
    distance = np.zeros(len(cells))
    circles = np.array([f.local is None for f in fences], dtype=bool)[owners]
    if circles.any():
        distance[circles] = _circle_distances(fences, lats[circles], lons[circles], owners[circles])
    if not circles.all():
        polygons = ~circles
        distance[polygons] = _polygon_distances(
            fences, lats[polygons], lons[polygons], owners[polygons]
        )
    return distance


def _circle_distances(
    fences: Sequence[Fence], lats: FloatArray, lons: FloatArray, owners: IntArray
) -> FloatArray:
    lat0 = np.array([f.lat for f in fences])[owners]
    lon0 = np.array([f.lon for f in fences])[owners]
    radius = np.array([f.radius_m for f in fences])[owners]
    h = haversine_terms(unit_vectors(lats, lons), unit_vectors(lat0, lon0))
    result: FloatArray = np.maximum(distance_of_terms(h) - radius, 0.0)
    return result


def _polygon_distances(
    fences: Sequence[Fence], lats: FloatArray, lons: FloatArray, owners: IntArray
) -> FloatArray:
    lat0 = np.array([f.lat for f in fences])[owners]
    lon0 = np.array([f.lon for f in fences])[owners]
    xs = (lons - lon0) * (METRES_PER_DEGREE_LAT * np.cos(np.radians(lat0)))
    ys = (lats - lat0) * METRES_PER_DEGREE_LAT
    shapes = np.array([f.local for f in fences], dtype=object)[owners]
    return np.asarray(shapely.distance(shapes, shapely.points(xs, ys)), dtype=np.float64)


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
