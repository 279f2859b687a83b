"""The simulated city's pure core: caregivers on their rounds, their phones' fixes, and falls.

:class:`City` takes a seeded ``random.Random``, time passed in, no I/O, so the same seed and the
same calls give the same trace. Caregivers travel between homes along straight lines at urban
speeds and dwell at each home; only the dwell is compressed by ``CityConfig.time_scale`` (travel
stays at real speed, so every fix is physically plausible and passes the fix-quality filters).
Phones add correlated GPS noise and sometimes lose the fix. The homes and caregivers are
``simulators.population``'s; ``simulators.simulate`` runs the city against the servers.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from simulators.geo import Point, bearing_deg, distance_m, lerp, offset
from simulators.population import CityConfig, populate
from simulators.visit_plan import PlannedVisit

MIN_STAY_S = 300.0
"""A caregiver who reaches a visit late stays at least this long (she checks in: a minute)."""
PARK_M = 250.0
"""Waiting to leave for her first visit, a caregiver waits this far down the road from the home
she comes from (outside its fence: no visit of hers is there)."""


class SimFix(NamedTuple):
    """One location a caregiver's phone reports (the OwnTracks fields)."""

    caregiver_id: str
    lat: float
    lon: float
    tst: int
    acc: float
    vel: float
    batt: int
    cog: float | None


class Fall(NamedTuple):
    device_id: str
    seq: int


@dataclass(slots=True)
class _Round:
    """One caregiver's state: a trip from ``origin`` to ``dest``, then a dwell until ``leave``."""

    rng: random.Random
    origin: Point
    dest: Point
    depart: float
    arrive: float
    leave: float
    speed_kmh: float
    next_fix: float
    outage: tuple[float, float]
    noise: tuple[float, float] = (0.0, 0.0)
    batt0: float = 100.0


class City:
    """Homes and caregivers moving through time; feed it ``now``, take fixes and falls out."""

    def __init__(self, config: CityConfig, start: float) -> None:
        if config.homes < 2 or config.caregivers < 1 or config.fix_interval_s <= 0:
            raise ValueError("a city needs two homes, one caregiver and a positive fix interval")
        self.config = config
        self.start = start
        self.homes, self.caregivers = populate(config)
        self._rounds = [self._first_round(i, start) for i in range(len(self.caregivers))]
        self._fall_rng = random.Random(f"{config.seed}:falls")
        self._fall_rate_per_s = config.falls_per_minute / 60.0
        self._next_fall = self._after_fall(start)
        # device counters continue across restarts, so a replay key (device, seq) stays unique
        self._seq_origin = int(start)
        self._falls: dict[str, int] = {}
        self._index = {c.id: i for i, c in enumerate(self.caregivers)}
        self._legs: dict[int, deque[PlannedVisit]] = {}
        """The visits each caregiver following a roster is yet to go to, in start order."""

    def _first_round(self, index: int, start: float) -> _Round:
        rng = random.Random(f"{self.config.seed}:caregiver:{index}")
        home = rng.choice(self.homes).at
        interval = self.config.fix_interval_s
        return _Round(
            rng=rng,
            origin=home,
            dest=home,
            depart=start,
            arrive=start,
            leave=start + rng.uniform(0.0, self._dwell_s(rng)),
            speed_kmh=0.0,
            next_fix=start + rng.uniform(0.0, interval),
            outage=self._next_outage(rng, start),
            batt0=rng.uniform(45.0, 100.0),
        )

    def _dwell_s(self, rng: random.Random) -> float:
        return rng.uniform(15 * 60, 45 * 60) / self.config.time_scale

    def _next_outage(self, rng: random.Random, after: float) -> tuple[float, float]:
        if self.config.outages_per_hour <= 0:
            return (math.inf, math.inf)
        begin = after + rng.expovariate(self.config.outages_per_hour / 3600.0)
        return (begin, begin + rng.uniform(30.0, 240.0))

    def follow(self, visits: Iterable[PlannedVisit], since: float) -> None:
        """From ``since`` on, the caregivers with visits among ``visits`` go to them as planned
        (``simulators.visit_plan``: on time, late, leaving early, or not at all) instead of
        wandering, and stay at the last one's home once they are done. Called with the city's
        start, a caregiver starts out where her plan has her, or waits down the road from the
        home she comes from; called later (the next day's visits), she goes on from where she is.
        """
        mine: dict[int, list[PlannedVisit]] = {}
        for v in visits:
            if v.arrive is not None and v.caregiver_id in self._index:
                mine.setdefault(self._index[v.caregiver_id], []).append(v)
        for index, planned in mine.items():
            planned.sort(key=lambda v: v.start)
            legs = self._legs.setdefault(index, deque())
            after = legs[-1].start if legs else -math.inf
            legs.extend(v for v in planned if v.start > after)
            r = self._rounds[index]
            if since <= self.start:
                self._start_on(r, legs, since)
            elif r.leave == math.inf and r.arrive <= since:  # done: off when her next visit says
                r.leave = since

    def _start_on(self, r: _Round, legs: deque[PlannedVisit], since: float) -> None:
        """Put her on her first visit's way at ``since``, the city's start."""
        first = legs.popleft()
        depart = first.depart
        assert first.arrive is not None and first.leave is not None and depart is not None
        origin = first.origin
        if since < depart:  # waiting to leave: down the road, not at a home
            along = distance_m(origin, first.home)
            if along > 2 * PARK_M:
                origin = lerp(origin, first.home, PARK_M / along)
                depart = first.arrive - distance_m(origin, first.home) / (first.speed_kmh / 3.6)
            else:
                depart = since
        r.origin, r.dest, r.speed_kmh = origin, first.home, first.speed_kmh
        r.depart = depart
        r.arrive = depart + distance_m(origin, first.home) / (first.speed_kmh / 3.6)
        r.leave = max(first.leave, r.arrive + MIN_STAY_S)

    def divert(self, caregiver_id: str, to: Point, now: float) -> None:
        """She drops what she is doing and drives to ``to`` (an incident she was assigned),
        stays a (compressed) while, then goes on to her next visit still worth going to."""
        index = self._index.get(caregiver_id)
        if index is None:
            return
        r = self._rounds[index]
        here, _vel, _cog = self.where(index, now)
        r.origin, r.dest, r.depart = here, to, now
        r.speed_kmh = r.rng.uniform(30.0, 45.0)
        r.arrive = now + distance_m(here, to) / (r.speed_kmh / 3.6)
        r.leave = r.arrive + self._dwell_s(r.rng)

    def _next_trip(self, r: _Round, index: int) -> None:
        """Leave for her next visit if she follows a roster, else for the nearest of a few
        homes picked at random."""
        legs = self._legs.get(index)
        if legs is not None:
            self._next_visit(r, legs)
            return
        picks = r.rng.sample(self.homes, k=min(12, len(self.homes)))
        dest = min((h.at for h in picks if h.at != r.dest), key=lambda p: distance_m(r.dest, p))
        r.origin, r.depart, r.speed_kmh = r.dest, r.leave, r.rng.uniform(20.0, 40.0)
        r.dest = dest
        r.arrive = r.depart + distance_m(r.origin, dest) / (r.speed_kmh / 3.6)
        r.leave = r.arrive + self._dwell_s(r.rng)

    def _next_visit(self, r: _Round, legs: deque[PlannedVisit]) -> None:
        """Set off for the next visit she can still reach before its end, leaving when her plan
        says (late if it says so) or at once if she is behind; none left: she stays."""
        r.origin = r.dest
        while legs:
            v = legs.popleft()
            assert v.arrive is not None and v.leave is not None
            travel = distance_m(r.origin, v.home) / (v.speed_kmh / 3.6)
            depart = max(r.leave, v.arrive - travel)
            if depart + travel > v.end - MIN_STAY_S:
                continue  # too far behind: she misses it
            r.dest, r.speed_kmh, r.depart = v.home, v.speed_kmh, depart
            r.arrive = depart + travel
            r.leave = max(v.leave, r.arrive + MIN_STAY_S)
            return
        r.depart = r.arrive = r.leave
        r.leave = math.inf

    def where(self, index: int, t: float) -> tuple[Point, float, float | None]:
        """Caregiver ``index``'s true position, speed (km/h) and course at ``t``.

        Rounds only move forward: ``t`` must not go back before an earlier call's trip.
        """
        r = self._rounds[index]
        while t >= r.leave:
            self._next_trip(r, index)
        if t < r.depart:  # waiting to set off
            return r.origin, 0.0, None
        if t >= r.arrive or r.arrive <= r.depart:  # at a home (or not yet left the first)
            return r.dest, 0.0, None
        fraction = (t - r.depart) / (r.arrive - r.depart)
        return lerp(r.origin, r.dest, fraction), r.speed_kmh, bearing_deg(r.origin, r.dest)

    def step(self, now: float) -> list[SimFix]:
        """The fixes of the caregivers whose phones are due to report at ``now``."""
        fixes = []
        interval = self.config.fix_interval_s
        for index, r in enumerate(self._rounds):
            if now < r.next_fix:
                continue
            taken = r.next_fix if now - r.next_fix < interval else now  # no backfill
            r.next_fix = taken + max(1.0, interval * r.rng.uniform(0.9, 1.1))
            fix = self._fix(index, r, int(taken))
            if fix is not None:
                fixes.append(fix)
        return fixes

    def _fix(self, index: int, r: _Round, tst: int) -> SimFix | None:
        while tst >= r.outage[1]:
            r.outage = self._next_outage(r.rng, r.outage[1])
        true, vel, cog = self.where(index, tst)
        if r.outage[0] <= tst:
            return None
        sigma = 4.0 if vel > 0 else 8.0  # indoors the fix is worse
        north, east = (_ar1(r.rng, n, sigma) for n in r.noise)
        r.noise = (north, east)
        seen = offset(true, north, east)
        acc = min(30.0, max(5.0, 2.5 * sigma + r.rng.uniform(-2.0, 6.0)))
        batt = max(5, int(r.batt0 - 4.0 * (tst - self.start) / 3600.0))
        speed = max(0.0, vel + r.rng.gauss(0.0, 1.5)) if vel > 0 else 0.0
        cid = self.caregivers[index].id
        return SimFix(cid, seen.lat, seen.lon, tst, round(acc, 1), round(speed, 1), batt, cog)

    def _after_fall(self, t: float) -> float:
        if self._fall_rate_per_s <= 0:
            return math.inf
        return t + self._fall_rng.expovariate(self._fall_rate_per_s)

    def maybe_falls(self, now: float) -> list[Fall]:
        """The falls that happened up to ``now`` (a Poisson process at ``falls_per_minute``)."""
        falls = []
        while self._next_fall <= now:
            device = self._fall_rng.choice(self.homes).device_id
            count = self._falls[device] = self._falls.get(device, 0) + 1
            falls.append(Fall(device, self._seq_origin + count))
            self._next_fall = self._after_fall(self._next_fall)
        return falls


def _ar1(rng: random.Random, previous: float, sigma: float, a: float = 0.9) -> float:
    """Correlated GPS noise (metres): each fix's error is mostly the last one's."""
    value = a * previous + math.sqrt(1 - a * a) * rng.gauss(0.0, sigma)
    return max(-25.0, min(25.0, value))
