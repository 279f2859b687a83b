"""The simulated homes' vitals monitors: wrist monitors reading heart rate, SpO2 and skin
temperature (a few with a blood-pressure cuff too) at their own interval of 5 to 60 s, the same
for the same seed, time passed in, no I/O.

Each resident has resting values of her own, and readings wander about them (correlated
noise). A loose strap gives now and then a wild reading (a heart rate doubled, an SpO2 far
down) that the filters must drop, and a monitor off the wrist says nothing for a few minutes.
Now and then a resident has a genuine episode that lasts: a racing heart, a falling SpO2, a
fever, long enough for the thresholds to raise their alarm and then to clear it.

``simulators.simulate`` publishes the readings of the city's monitors; :func:`telemetry_share`
is the benchmarks' telemetry load (``simulators.device_load``'s publisher, telemetry alone).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from adapters.storage.postgres import Database
from adapters.storage.vitals import VitalsStore
from simulators.device_load import DeviceShare

SPIKE_CHANCE = 0.01
"""Of readings, a wild one from a loose strap."""
DROPOUTS_PER_HOUR = 1.0
"""Of each monitor: taken off, or out of range of its hub, for 1 to 10 minutes."""
CUFF_CHANCE = 0.25
"""Of monitors, one with a blood-pressure cuff, read every :data:`CUFF_EVERY` readings."""
CUFF_EVERY = 30
EPISODES: dict[str, tuple[str, tuple[float, float], tuple[float, float]]] = {
    # kind: (measure, its value during the episode, how long it lasts in seconds)
    "tachycardia": ("hr", (130.0, 150.0), (8 * 60.0, 15 * 60.0)),
    "low_spo2": ("spo2", (85.0, 89.0), (5 * 60.0, 10 * 60.0)),
    "fever": ("temp", (38.4, 39.2), (20 * 60.0, 30 * 60.0)),
}


def monitor_id(patient_id: str) -> str:
    return f"{patient_id}-vm"


def wearers(patient_ids: list[str], share: float, seed: int) -> list[str]:
    """The residents who wear a monitor: about ``share`` of them, the same for the same seed."""
    rng = random.Random(f"{seed}:vitals:wearers")
    return [p for p in patient_ids if rng.random() < share]


class Reading(NamedTuple):
    """One telemetry message a monitor publishes: its device and the payload's fields."""

    device_id: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Episode:
    kind: str
    start: float
    end: float
    value: float


@dataclass(slots=True)
class _Monitor:
    device_id: str
    rng: random.Random
    interval_s: float
    rest: dict[str, float]
    cuff: bool
    next_at: float
    seq: int = 0
    noise: dict[str, float] = field(default_factory=dict)
    silent_until: float = 0.0
    next_dropout: float = math.inf
    episode: Episode | None = None


class VitalsMonitors:
    """The monitors of the homes given; feed it ``now``, take the readings due."""

    def __init__(
        self, patient_ids: list[str], seed: int, start: float, episodes_per_hour: float = 1.0
    ) -> None:
        self.start = start
        self.patient_ids = list(patient_ids)
        self._monitors = [self._monitor(p, seed, start) for p in patient_ids]
        self._episode_rng = random.Random(f"{seed}:vitals:episodes")
        self._episode_rate_s = episodes_per_hour / 3600.0
        self._next_episode = self._after(start)

    @property
    def device_ids(self) -> list[str]:
        return [m.device_id for m in self._monitors]

    def _monitor(self, patient_id: str, seed: int, start: float) -> _Monitor:
        rng = random.Random(f"{seed}:vitals:{patient_id}")
        interval = rng.choice((5.0, 10.0, 15.0, 30.0, 60.0))
        rest = {
            "hr": rng.uniform(58.0, 86.0),
            "spo2": rng.uniform(94.5, 98.5),
            "temp": rng.uniform(35.9, 36.8),
            "bp_sys": rng.uniform(110.0, 150.0),
            "bp_dia": rng.uniform(65.0, 90.0),
        }
        m = _Monitor(monitor_id(patient_id), rng, interval, rest, rng.random() < CUFF_CHANCE, 0.0)
        m.next_at = start + rng.uniform(0.0, interval)
        m.seq = int(start)  # a device's counter goes on across restarts of the simulation
        m.next_dropout = start + rng.expovariate(DROPOUTS_PER_HOUR / 3600.0)
        return m

    def _after(self, t: float) -> float:
        if self._episode_rate_s <= 0 or not self._monitors:
            return math.inf
        return t + self._episode_rng.expovariate(self._episode_rate_s)

    def step(self, now: float) -> list[Reading]:
        """The readings of the monitors due to report up to ``now``."""
        self._start_episodes(now)
        out = []
        for m in self._monitors:
            while m.next_at <= now:
                at = m.next_at
                m.next_at = at + m.interval_s
                reading = self._read(m, at)
                if reading is not None:
                    out.append(reading)
        return out

    def _start_episodes(self, now: float) -> None:
        while self._next_episode <= now:
            rng = self._episode_rng
            m = rng.choice(self._monitors)
            kind = rng.choice(sorted(EPISODES))
            _, values, lasting = EPISODES[kind]
            end = self._next_episode + rng.uniform(*lasting)
            m.episode = Episode(kind, self._next_episode, end, rng.uniform(*values))
            self._next_episode = self._after(self._next_episode)

    def _read(self, m: _Monitor, at: float) -> Reading | None:
        if at >= m.next_dropout:
            m.silent_until = at + m.rng.uniform(60.0, 600.0)
            m.next_dropout = m.silent_until + m.rng.expovariate(DROPOUTS_PER_HOUR / 3600.0)
        if at < m.silent_until:
            return None
        m.seq += 1
        body: dict[str, Any] = {"ts": round(at, 3), "seq": m.seq}
        for measure, sigma, digits in (("hr", 2.5, 0), ("spo2", 0.6, 1), ("temp", 0.08, 2)):
            body[measure] = round(self._value(m, measure, sigma, at), digits)
        if m.cuff and m.seq % CUFF_EVERY == 0:
            body["bp_sys"] = round(self._value(m, "bp_sys", 6.0, at))
            body["bp_dia"] = round(min(self._value(m, "bp_dia", 4.0, at), body["bp_sys"] - 20))
        if m.rng.random() < SPIKE_CHANCE:
            _spike(m.rng, body)
        return Reading(m.device_id, body)

    def _value(self, m: _Monitor, measure: str, sigma: float, at: float) -> float:
        """Her resting value with correlated noise, or the episode's while it lasts."""
        noise = m.noise[measure] = 0.8 * m.noise.get(measure, 0.0) + m.rng.gauss(0.0, sigma)
        e = m.episode
        if e is not None and at >= e.end:
            m.episode = e = None
        if e is not None and EPISODES[e.kind][0] == measure and at >= e.start:
            base = e.value
        else:
            base = m.rest[measure]
        value = base + noise
        return min(100.0, value) if measure == "spo2" else value


def _spike(rng: random.Random, body: dict[str, Any]) -> None:
    """A loose strap's wild reading: a heart rate doubled or halved, or an SpO2 far down."""
    if rng.random() < 0.7:
        body["hr"] = round(min(240.0, body["hr"] * rng.choice((0.5, 1.9, 2.1))))
    else:
        body["spo2"] = round(rng.uniform(72.0, 84.0), 1)


# ------------------------------------------------------------------ the benchmarks' load


def telemetry_share(
    host: str, port: int, homes: list[int], rate: float, seconds: float, start_at: float
) -> DeviceShare:
    """A publisher process's part of a telemetry load: ``rate`` readings a second (one a
    message, QoS 1) from the vitals monitors of ``homes`` for ``seconds``, from ``start_at``;
    ``simulators.device_load.publish`` runs it and counts the broker's acknowledgements."""
    return DeviceShare(host, port, homes, int(rate * seconds), 0, rate, start_at)


async def stored_samples(db: Database, patient_ids: list[str] | None = None) -> int:
    """How many telemetry samples the system has kept (of these patients', when given)."""
    return await VitalsStore(db).count_samples(patient_ids)
