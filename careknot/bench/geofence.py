"""``careknot bench geofence``: fix evaluations per second of the fence index on one core,
against a naive loop over every fence, on the same fixes.

The fences are the homes of a simulated Leeds (``simulators.city``): 50,000 by default, most of
them 200 m circles and a share of them polygons (house and garden plots). The fixes are the
simulated caregivers' phones travelling between homes and dwelling at them. The index takes
them in batches, as a stream agent does; the naive loop calls ``Fence.contains`` for every fence
(shapely's ``contains_xy`` on a prepared polygon, the great-circle distance for a circle) on an
evenly spaced sample of the fixes, and its time for all of them is extrapolated from that.

Rates are per CPU second of the measuring thread, pinned to one core, so that other work on
a shared machine does not count against them; the wall-clock rate is reported beside them.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from careknot.bench import command, own_options
from careknot.bench.report import machine, write
from geofence.fences import Fence
from geofence.geodesy import LocalFrame
from geofence.index import FenceIndex
from kernel.settings import Settings
from simulators.city import City
from simulators.population import CityConfig, Home

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True, slots=True)
class Options:
    fences: int
    fixes: int
    polygons: float
    batch: int
    rounds: int
    naive_sample: int
    radius_km: float
    seed: int


async def run(settings: Settings, args: argparse.Namespace) -> int:
    del settings  # no servers: the geofence core is pure
    opts = own_options("geofence", args)
    figures = measure(Options(**vars(opts)))
    figures["command"] = command("geofence", opts)
    path = write(args.output, "bench-geofence.json", figures)
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    print(f"written to {path}")
    return 0 if figures["disagreements"] == 0 else 1


def measure(o: Options) -> dict[str, Any]:
    cpu = _pin_to_one_core()
    city = City(_city_config(o), start=1_760_000_000.0)
    fences = _fences(city.homes, o)
    started = time.perf_counter()
    index = FenceIndex(fences)
    build_s = time.perf_counter() - started
    lats, lons, accs = _fixes(city, o.fixes)
    rounds = [_time_evaluate(index, lats, lons, o.batch) for _ in range(o.rounds)]
    classify_s = _time_classify(index, lats, lons, accs, o.batch)
    per_s = o.fixes / statistics.median(cpu for cpu, _ in rounds)
    naive = _naive(index, fences, lats, lons, o.naive_sample)
    hits = index.evaluate(lats, lons)
    return {
        "benchmark": "geofence",
        "fences": len(fences),
        "polygons": sum(f.geometry is not None for f in fences),
        "fixes": o.fixes,
        "batch": o.batch,
        "resolution": index.resolution,
        "reach_m": index.reach_m,
        "build_s": round(build_s, 2),
        "hits_per_fix": round(len(hits.fix) / o.fixes, 2),
        "share_of_fixes_inside_a_fence": round(len(np.unique(hits.fix)) / o.fixes, 3),
        "evaluations_per_s": round(per_s),
        "evaluations_per_s_rounds": [round(o.fixes / cpu) for cpu, _ in rounds],
        "evaluations_per_s_wall": round(o.fixes / statistics.median(w for _, w in rounds)),
        "classify_per_s": round(o.fixes / classify_s),
        **naive,
        "speedup_vs_naive": round(per_s / naive["naive_evaluations_per_s"], 1),
        "pinned_cpu": cpu,
        "cpu_model": _cpu_model(),
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _city_config(o: Options) -> CityConfig:
    caregivers = 1000
    return CityConfig(
        caregivers=caregivers,
        homes=o.fences,
        fix_interval_s=3.0,
        falls_per_minute=0.0,
        seed=o.seed,
        time_scale=10.0,
        answer_offers=False,
        radius_m=o.radius_km * 1000.0,
    )


def _fences(homes: Sequence[Home], o: Options) -> list[Fence]:
    rng = random.Random(f"{o.seed}:fences")
    fences = []
    for home in homes:
        ids = (f"fence-{home.patient_id}", home.patient_id, "leeds")
        if rng.random() < o.polygons:
            fences.append(Fence.polygon(*ids, _plot(rng, home.at.lat, home.at.lon)))
        else:
            fences.append(Fence.circle(*ids, home.at.lat, home.at.lon))
    return fences


def _plot(rng: random.Random, lat: float, lon: float) -> dict[str, Any]:
    """A house-and-garden polygon about a home: 5 to 9 vertices, 25 to 120 m out."""
    frame, n = LocalFrame(lat, lon), rng.randint(5, 9)
    reach = rng.uniform(25.0, 120.0)
    ring = []
    for i in range(n):
        angle, r = 2 * math.pi * i / n, reach * rng.uniform(0.6, 1.0)
        ring.append(list(frame.to_lonlat(r * math.sin(angle), r * math.cos(angle))))
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def _fixes(city: City, count: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    lats: list[float] = []
    lons: list[float] = []
    accs: list[float] = []
    now = city.start
    while len(lats) < count:
        now += 1.0
        for fix in city.step(now):
            lats.append(fix.lat)
            lons.append(fix.lon)
            accs.append(fix.acc)
    return np.array(lats[:count]), np.array(lons[:count]), np.array(accs[:count])


def _time_evaluate(
    index: FenceIndex, lats: FloatArray, lons: FloatArray, batch: int
) -> tuple[float, float]:
    """CPU seconds (this thread's) and wall seconds to evaluate every fix, batch by batch."""
    cpu, wall = time.thread_time(), time.perf_counter()
    for i in range(0, len(lats), batch):
        index.evaluate(lats[i : i + batch], lons[i : i + batch])
    return time.thread_time() - cpu, time.perf_counter() - wall


def _time_classify(
    index: FenceIndex, lats: FloatArray, lons: FloatArray, accs: FloatArray, batch: int
) -> float:
    started = time.thread_time()
    for i in range(0, len(lats), batch):
        index.classify(lats[i : i + batch], lons[i : i + batch], accs[i : i + batch])
    return time.thread_time() - started


def _naive(
    index: FenceIndex, fences: list[Fence], lats: FloatArray, lons: FloatArray, sample: int
) -> dict[str, Any]:
    """Every fence tested for an evenly spaced sample of the fixes; compared with the index."""
    picks = np.unique(np.linspace(0, len(lats) - 1, sample).astype(int))
    started = time.thread_time()
    expected = [
        {f.fence_id for f in fences if f.contains(lat, lon)}
        for lat, lon in zip(lats[picks].tolist(), lons[picks].tolist(), strict=True)
    ]
    elapsed = time.thread_time() - started
    got = index.evaluate_sets(lats[picks], lons[picks])
    per_s = len(picks) / elapsed
    return {
        "naive_sample": len(picks),
        "naive_evaluations_per_s": round(per_s, 1),
        "naive_all_fixes_s_extrapolated": round(len(lats) / per_s),
        "disagreements": sum(a != b for a, b in zip(expected, got, strict=True)),
        "naive_hits_in_sample": sum(len(e) for e in expected),
    }


def _pin_to_one_core() -> int | None:
    """Run on one core only (Linux); the core's number, or None where that cannot be done."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return sys.platform
