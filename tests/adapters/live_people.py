"""People of three agencies scattered about Leeds for the live index's tests: some close, most
far, some stale and some busy (:func:`scatter`), and put in the index as their fixes and
statuses (:func:`put`)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from adapters.storage.live import BUSY, LiveIndex
from kernel.contracts import FixEvent

LEEDS = (53.800, -1.549)
NOW = 1_800_000_000.0
STALE_S = 120.0
AGENCIES = ("ag0", "ag1", "ag2")


@dataclass(frozen=True)
class Person:
    id: str
    agency: str
    lat: float
    lon: float
    ts: float
    status: str


async def put(live: LiveIndex, people: list[Person]) -> None:
    await live.update(
        [
            FixEvent(event_id=p.id, agency_id=p.agency, caregiver_id=p.id, lat=p.lat, lon=p.lon,
                ts=p.ts, received_at=p.ts)
            for p in people
        ]
    )  # fmt: skip
    for p in people:
        if p.status == BUSY:
            await live.set_status(p.id, BUSY)


def scatter(rng: random.Random, n: int, prefix: str) -> list[Person]:
    """People around Leeds: some close, most over ~30 km; some stale, some busy."""
    out = []
    for i in range(n):
        spread = 0.02 if rng.random() < 0.3 else 0.25
        ts = NOW - rng.choice((0.0, 30.0, 119.0, 121.0, 600.0))
        status = BUSY if rng.random() < 0.15 else "available"
        lat, lon = rng.gauss(LEEDS[0], spread), rng.gauss(LEEDS[1], spread * 1.6)
        out.append(Person(f"{prefix}{i}", rng.choice(AGENCIES), lat, lon, ts, status))
    return out
