"""Who may publish where: topic identities checked against the registry in Postgres.

A device publishes only under its own id and its own agency; a caregiver's phone only under
hers. Lookups are cached for a short time (misses for less), since every message asks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from careknot.errors import RejectedPayload
from careknot.storage.postgres import Database
from ingest.parse import Route

HIT_TTL_S = 60.0
MISS_TTL_S = 5.0


class Registry:
    def __init__(self, db: Database, clock: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[str | None, float]] = {}

    async def check(self, r: Route, topic: str) -> None:
        """Raise :class:`RejectedPayload` unless the topic's subject belongs to its agency."""
        who = "caregiver" if r.kind == "loc" else "device"
        agency = await self._agency_of(who, r.subject)
        if agency is None:
            raise RejectedPayload(f"unknown_{who}", r.subject, topic=topic)
        if agency != r.agency:
            raise RejectedPayload(
                f"{who}_agency_mismatch",
                f"{r.subject} is not registered to {r.agency}",
                topic=topic,
            )

    async def _agency_of(self, who: str, subject: str) -> str | None:
        now = self._clock()
        cached = self._cache.get((who, subject))
        if cached is not None and cached[1] > now:
            return cached[0]
        row = await (
            self._db.caregiver(subject) if who == "caregiver" else self._db.device(subject)
        )
        agency = row.agency_id if row else None
        self._cache[(who, subject)] = (agency, now + (HIT_TTL_S if agency else MISS_TTL_S))
        return agency
