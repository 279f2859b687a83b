"""Who may publish where: topic identities checked against the registry in Postgres.

A device publishes only under its own id and its own agency; a caregiver's phone only under
hers. An OwnTracks phone publishes under ``owntracks/{user}/{device}``, mapped to a caregiver
by the ``owntracks_devices`` table. Every message asks, so answers are cached: fresh for
:data:`HIT_TTL_S` (misses for :data:`MISS_TTL_S`), in a cache of at most :data:`CACHED` publishers
of each kind, the one asked about least recently forgotten first.

Ingest outlives Postgres. When a look-up fails (:class:`~kernel.errors.StorageError`: the
adapter's word for Postgres away, restarting, failing or not answering in time):

- the last answer Postgres gave about a publisher, however old, stands in until it answers
  again: the registry changes rarely, and a phone known a minute ago is known still;
- a publisher with no answer cached waits, its message held (its batch unacknowledged; the
  MQTT reader stops once the inbox is full), and Postgres is asked again after the backoff's
  wait, until it answers or the outage has lasted the message's patience: a device's
  :data:`DEVICE_PATIENCE_S` (as long as a device event is tried on Kafka, since nothing
  supersedes a fall), a phone's :data:`PHONE_PATIENCE_S` (her next fix supersedes this one).
  Then the message is refused as ``registry_unavailable``: dead-lettered with its payload and
  counted, as is every such message at once until Postgres answers again;
- while Postgres is away it is asked at most once per wait of the backoff, not once per message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Generic, Protocol, TypeVar

from adapters.storage.postgres import Database, Registered, Who
from ingest.device_events import DEADLINE_S
from ingest.owntracks import OwnTracksDevice, is_owntracks
from ingest.parse import Route, route
from kernel.backoff import Backoff
from kernel.errors import RejectedPayload, StorageError

log = logging.getLogger(__name__)

HIT_TTL_S = 60.0
MISS_TTL_S = 5.0
CACHED = 100_000
"""Publishers of each kind whose answers are kept (a few hundred bytes each)."""
DEVICE_PATIENCE_S = DEADLINE_S
PHONE_PATIENCE_S = 10.0
RETRY_FIRST_S = 0.5
RETRY_CAP_S = 5.0
REGISTRY_UNAVAILABLE = "registry_unavailable"
_REGISTER_OWNTRACKS = (
    'INSERT INTO owntracks_devices("user", device, caregiver_id) VALUES ($1, $2, $3)'
    ' ON CONFLICT ("user", device) DO UPDATE SET caregiver_id = EXCLUDED.caregiver_id'
)
K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


async def register_owntracks_device(db: Database, device: OwnTracksDevice, caregiver: str) -> None:
    """Map an OwnTracks ``{user}/{device}`` to a caregiver (again: the new one wins)."""
    await db.pool.execute(_REGISTER_OWNTRACKS, device.user, device.device, caregiver)


class RegistryStore(Protocol):
    """What the registry asks Postgres (:class:`~adapters.storage.postgres.Database`)."""

    async def agencies_of(self, who: Who, ids: list[str]) -> dict[str, Registered]: ...

    async def owntracks_caregiver(self, user: str, device: str) -> tuple[str, str] | None: ...


class Answers(Generic[K, V]):
    """Answers by key with the time each is fresh until, at most ``size`` of them: the one
    asked about least recently is forgotten first. A stale answer is kept until then."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> tuple[V, float] | None:
        """(answer, fresh until), or None if there is none."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: K, answer: V, fresh_until: float) -> None:
        self._entries[key] = (answer, fresh_until)
        self._entries.move_to_end(key)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)


class Outage:
    """Postgres as the registry last found it: since when it has failed (None: it answers),
    and when it may be asked again (the backoff's wait after each failure)."""

    def __init__(self, clock: Callable[[], float], backoff: Backoff) -> None:
        self._clock, self._backoff = clock, backoff
        self.since: float | None = None
        self._ask_at = 0.0

    def failed(self, exc: StorageError) -> None:
        now = self._clock()
        if self.since is None:
            self.since = now
            log.warning("registry: Postgres does not answer (%s); known publishers go on", exc)
        self._ask_at = now + self._backoff.next()

    def answered(self) -> None:
        if self.since is not None:
            log.info("registry: Postgres answers again after %.1f s", self.lasted())
            self.since = None
            self._backoff.reset()

    def may_ask(self) -> bool:
        return self.since is None or self._clock() >= self._ask_at

    def wait_s(self) -> float:
        """How long until Postgres may be asked again."""
        return max(0.0, self._ask_at - self._clock())

    def lasted(self) -> float:
        return 0.0 if self.since is None else self._clock() - self.since


class Registry:
    def __init__(
        self,
        db: RegistryStore,
        clock: Callable[[], float] = time.monotonic,
        *,
        sleep: Sleep = asyncio.sleep,
        cached: int = CACHED,
    ) -> None:
        self._db = db
        self._clock = clock
        self._sleep = sleep
        self._cache: Answers[tuple[Who, str], Registered | None] = Answers(cached)
        self._owntracks: Answers[OwnTracksDevice, tuple[str, str] | None] = Answers(cached)
        self.outage = Outage(clock, Backoff(RETRY_FIRST_S, RETRY_CAP_S))

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
            log.debug("registry look-up for a batch failed: %s", exc)

    async def learn(self, routes: Iterable[Route]) -> None:
        """Ask Postgres once per kind of publisher about every subject of ``routes`` whose
        answer is not cached fresh, and cache the answers (misses too), so the checks of a
        batch's messages that follow do not wait on Postgres one by one; nothing while
        Postgres is away and not yet to be asked again."""
        if not self.outage.may_ask():
            return
        wanted: dict[Who, set[str]] = {}
        for r in routes:
            if not self.knows(r):
                wanted.setdefault(_who(r), set()).add(r.subject)
        for who, subjects in wanted.items():
            try:
                found = await self._db.agencies_of(who, sorted(subjects))
            except StorageError as exc:
                self.outage.failed(exc)
                raise
            self.outage.answered()
            now = self._clock()
            for subject in subjects:
                self._remember(who, subject, found.get(subject), now)

    def knows(self, r: Route) -> bool:
        """Whether the answer for the topic's subject is cached and fresh (check won't wait)."""
        cached = self._cache.get((_who(r), r.subject))
        return cached is not None and cached[1] > self._clock()

    async def check(self, r: Route, topic: str) -> Registered:
        """What the registry holds of the topic's subject (a device's kind among it); raise
        :class:`RejectedPayload` unless it belongs to the topic's agency
        (``registry_unavailable`` if Postgres stayed away past the message's patience)."""
        who = _who(r)
        registered = await self._registered(who, r.subject, topic)
        if registered is None:
            raise RejectedPayload(f"unknown_{who}", r.subject, topic=topic)
        if registered.agency_id != r.agency:
            raise RejectedPayload(
                f"{who}_agency_mismatch",
                f"{r.subject} is not registered to {r.agency}",
                topic=topic,
            )
        return registered

    async def _registered(self, who: Who, subject: str, topic: str) -> Registered | None:
        cached = self._cache.get((who, subject))
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        ask = partial(self._db.agencies_of, who, [subject])
        patience = None if cached is not None else _patience(who)
        found = await self._ask(ask, patience, topic, f"{who} {subject}")
        if found is None:  # Postgres away: its last answer stands in
            assert cached is not None
            return cached[0]
        registered = found[0].get(subject)
        self._remember(who, subject, registered, self._clock())
        return registered

    def _remember(self, who: Who, subject: str, found: Registered | None, now: float) -> None:
        self._cache.put((who, subject), found, now + (HIT_TTL_S if found else MISS_TTL_S))

    async def owntracks_caregiver(self, device: OwnTracksDevice, topic: str) -> tuple[str, str]:
        """(caregiver id, agency id) of an OwnTracks device, or ``unknown_owntracks_device``
        (``registry_unavailable`` as for :meth:`check`)."""
        cached = self._owntracks.get(device)
        if cached is None or cached[1] <= self._clock():
            ask = partial(self._db.owntracks_caregiver, device.user, device.device)
            patience = None if cached is not None else PHONE_PATIENCE_S
            found = await self._ask(ask, patience, topic, f"{device.user}/{device.device}")
            if found is not None:  # else Postgres is away: its last answer stands in
                ttl = HIT_TTL_S if found[0] else MISS_TTL_S
                cached = (found[0], self._clock() + ttl)
                self._owntracks.put(device, *cached)
        assert cached is not None
        if cached[0] is None:
            raise RejectedPayload(
                "unknown_owntracks_device", f"{device.user}/{device.device}", topic=topic
            )
        return cached[0]

    async def _ask(
        self, query: Callable[[], Awaitable[T]], patience_s: float | None, topic: str, about: str
    ) -> tuple[T] | None:
        """Postgres's answer to ``query`` (in a 1-tuple); None at once while Postgres is away
        when an older answer may stand in (``patience_s`` None); else asked again after the
        backoff's wait until Postgres answers, or ``registry_unavailable`` once the outage has
        lasted ``patience_s``."""
        while True:
            if not self.outage.may_ask():
                if patience_s is None:
                    return None
                left = patience_s - self.outage.lasted()
                if left <= 0:
                    raise RejectedPayload(
                        REGISTRY_UNAVAILABLE,
                        f"no answer about {about} for {self.outage.lasted():.0f} s",
                        topic=topic,
                    )
                await self._sleep(min(self.outage.wait_s(), left))
                continue
            try:
                answer = await query()
            except StorageError as exc:
                self.outage.failed(exc)
                continue
            self.outage.answered()
            return (answer,)


def _who(r: Route) -> Who:
    return "caregiver" if r.kind in ("loc", "presence") else "device"


def _patience(who: Who) -> float:
    return DEVICE_PATIENCE_S if who == "device" else PHONE_PATIENCE_S
