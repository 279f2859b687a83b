"""Who may publish where: topic identities checked against the registry in Postgres.

A device publishes only under its own id and its own agency; a caregiver's phone only under
hers. An OwnTracks phone publishes under ``owntracks/{user}/{device}``, mapped to a caregiver
by the ``owntracks_devices`` table. Lookups are cached for a short time (misses for less),
since every message asks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from adapters.storage.postgres import Database, Who
from ingest.owntracks import OwnTracksDevice, is_owntracks
from ingest.parse import Route, route
from kernel.errors import RejectedPayload

log = logging.getLogger(__name__)

HIT_TTL_S = 60.0
MISS_TTL_S = 5.0
_OWNTRACKS_CAREGIVER = (
    "SELECT d.caregiver_id, c.agency_id FROM owntracks_devices d"
    ' JOIN caregivers c ON c.id = d.caregiver_id WHERE d."user" = $1 AND d.device = $2'
)
_REGISTER_OWNTRACKS = (
    'INSERT INTO owntracks_devices("user", device, caregiver_id) VALUES ($1, $2, $3)'
    ' ON CONFLICT ("user", device) DO UPDATE SET caregiver_id = EXCLUDED.caregiver_id'
)


async def register_owntracks_device(db: Database, device: OwnTracksDevice, caregiver: str) -> None:
    """Map an OwnTracks ``{user}/{device}`` to a caregiver (again: the new one wins)."""
    await db.pool.execute(_REGISTER_OWNTRACKS, device.user, device.device, caregiver)


class Registry:
    def __init__(self, db: Database, clock: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[str | None, float]] = {}
        self._owntracks: dict[OwnTracksDevice, tuple[tuple[str, str] | None, float]] = {}

    async def learn_topics(self, topics: Iterable[str]) -> None:
        """Ask about a batch's v1 publishers in one go (:meth:`learn`), so the checks message by
        message that follow do not wait on Postgres in turn; should Postgres fail here, each
        check asks again and fails on its own."""
        routes = []
        for topic in dict.fromkeys(topics):  # a topic once, however many
            if is_owntracks(topic):
                continue
            try:
                routes.append(route(topic))
            except RejectedPayload:
                continue  # refused with its reason when its message is handled
        try:
            await self.learn(routes)
        except Exception as exc:  # only ahead of time: each check asks again, fails on its own
            log.warning("registry look-up for a batch failed: %s", exc)

    async def learn(self, routes: Iterable[Route]) -> None:
        """Ask Postgres once per kind of publisher about every subject of ``routes`` whose
        answer is not cached fresh, and cache the answers (misses too), so the checks of a
        batch's messages that follow do not wait on Postgres one by one."""
        wanted: dict[Who, set[str]] = {}
        for r in routes:
            if not self.knows(r):
                wanted.setdefault(_who(r), set()).add(r.subject)
        for who, subjects in wanted.items():
            found = await self._db.agencies_of(who, sorted(subjects))
            now = self._clock()
            for subject in subjects:
                self._remember(who, subject, found.get(subject), now)

    def knows(self, r: Route) -> bool:
        """Whether the answer for the topic's subject is cached and fresh (check won't wait)."""
        cached = self._cache.get((_who(r), r.subject))
        return cached is not None and cached[1] > self._clock()

    async def check(self, r: Route, topic: str) -> None:
        """Raise :class:`RejectedPayload` unless the topic's subject belongs to its agency."""
        who = _who(r)
        agency = await self._agency_of(who, r.subject)
        if agency is None:
            raise RejectedPayload(f"unknown_{who}", r.subject, topic=topic)
        if agency != r.agency:
            raise RejectedPayload(
                f"{who}_agency_mismatch",
                f"{r.subject} is not registered to {r.agency}",
                topic=topic,
            )

    async def _agency_of(self, who: Who, subject: str) -> str | None:
        now = self._clock()
        cached = self._cache.get((who, subject))
        if cached is not None and cached[1] > now:
            return cached[0]
        agency = (await self._db.agencies_of(who, [subject])).get(subject)
        self._remember(who, subject, agency, now)
        return agency

    def _remember(self, who: Who, subject: str, agency: str | None, now: float) -> None:
        self._cache[(who, subject)] = (agency, now + (HIT_TTL_S if agency else MISS_TTL_S))

    async def owntracks_caregiver(self, device: OwnTracksDevice, topic: str) -> tuple[str, str]:
        """(caregiver id, agency id) of an OwnTracks device, or ``unknown_owntracks_device``."""
        now = self._clock()
        cached = self._owntracks.get(device)
        if cached is None or cached[1] <= now:
            row = await self._db.pool.fetchrow(_OWNTRACKS_CAREGIVER, device.user, device.device)
            found = (row["caregiver_id"], row["agency_id"]) if row else None
            cached = (found, now + (HIT_TTL_S if found else MISS_TTL_S))
            self._owntracks[device] = cached
        if cached[0] is None:
            raise RejectedPayload(
                "unknown_owntracks_device", f"{device.user}/{device.device}", topic=topic
            )
        return cached[0]


def _who(r: Route) -> Who:
    return "caregiver" if r.kind in ("loc", "presence") else "device"
