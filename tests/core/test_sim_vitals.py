"""The simulated vitals monitors (``simulators/vitals.py``): the same readings for the same seed,
each monitor at its own interval, wild readings and silences among them, and genuine episodes
that the vitals core raises (and clears) while the wild readings raise nothing."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise
from typing import Any

import orjson

from ingest.parse import Limits, parse_telemetry, route
from kernel.contracts import vitals_of
from simulators.vitals import VitalsMonitors, monitor_id, wearers
from vitals.patient import PatientVitals
from vitals.thresholds import DEFAULTS

T0 = 1_800_000_000.0
HOMES = [f"p{i:03d}" for i in range(40)]


def run(monitors: VitalsMonitors, hours: float, tick_s: float = 1.0) -> list[Any]:
    out = []
    steps = int(hours * 3600 / tick_s)
    for n in range(1, steps + 1):
        out += monitors.step(T0 + n * tick_s)
    return out


def test_the_same_seed_gives_the_same_readings() -> None:
    one = run(VitalsMonitors(HOMES[:5], 7, T0), 0.2)
    two = run(VitalsMonitors(HOMES[:5], 7, T0), 0.2)
    assert one == two and one
    assert one != run(VitalsMonitors(HOMES[:5], 8, T0), 0.2)


def test_each_monitor_reads_at_an_interval_of_its_own_and_sometimes_falls_silent() -> None:
    readings = run(VitalsMonitors(HOMES, 7, T0, episodes_per_hour=0), 2.0)
    times: dict[str, list[float]] = defaultdict(list)
    for r in readings:
        times[r.device_id].append(r.body["ts"])
    assert set(times) == {monitor_id(p) for p in HOMES}
    gaps = [b - a for ts in times.values() for a, b in pairwise(ts)]
    assert min(gaps) >= 5.0 - 1e-6
    assert max(gaps) >= 120.0  # a monitor off the wrist for minutes


def test_every_reading_is_one_ingest_takes() -> None:
    topic = "ck/leeds/dev/p000-vm/tel"
    for r in run(VitalsMonitors(HOMES, 7, T0), 1.0):
        (sample,) = parse_telemetry(
            route(topic), topic, orjson.dumps(r.body), r.body["ts"], Limits()
        )
        assert vitals_of(sample)


def test_episodes_raise_alarms_and_wild_readings_do_not() -> None:
    """Over six hours, a resident's alarms come only with her episodes: without any, the
    loose straps' wild readings raise nothing; with them, some are raised and cleared."""
    quiet = judge(run(VitalsMonitors(HOMES, 7, T0, episodes_per_hour=0), 6.0))
    assert quiet == []
    stormy = judge(run(VitalsMonitors(HOMES, 7, T0, episodes_per_hour=3.0), 6.0))
    assert any(change == "raise" for _, _, change in stormy)
    assert any(change == "clear" for _, _, change in stormy)


def judge(readings: list[Any]) -> list[tuple[str, str, str]]:
    patients: dict[str, PatientVitals] = {}
    changes: list[tuple[str, str, str]] = []
    for r in readings:
        p = patients.setdefault(r.device_id, PatientVitals.start(DEFAULTS))
        values = {k: float(v) for k, v in r.body.items() if k not in ("ts", "seq")}
        for c in p.observe(r.body["ts"], values).changes:
            changes.append((r.device_id, c.kind, c.change))
    return changes


def test_about_the_share_asked_for_wear_a_monitor() -> None:
    worn = wearers([f"p{i}" for i in range(1000)], 0.25, 7)
    assert 200 <= len(worn) <= 300
    assert worn == wearers([f"p{i}" for i in range(1000)], 0.25, 7)
