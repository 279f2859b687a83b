"""Ingest's registry without a server: its cache is bounded (the least recently asked
forgotten first) and fresh for a time, and it outlives Postgres: an answer once had stands in
while Postgres is away, asked at most once per wait of the backoff; a publisher never seen
waits for Postgres up to its patience, then is refused as ``registry_unavailable``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest

from adapters.storage.postgres import Registered, Who
from ingest.owntracks import OwnTracksDevice
from ingest.parse import route
from ingest.registry import (
    DEVICE_PATIENCE_S,
    HIT_TTL_S,
    PHONE_PATIENCE_S,
    REGISTRY_UNAVAILABLE,
    Answers,
    Registry,
)
from kernel.errors import RejectedPayload, StorageError


@dataclass
class Clock:
    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class Store:
    """The registry's Postgres: caregivers and devices of agency ``a1``, and whether it is
    away (then every question fails as the adapter says so)."""

    known: set[str] = field(default_factory=set)
    away: bool = False
    asked: Counter[str] = field(default_factory=Counter)
    back_after: int | None = None
    """Failed questions after which Postgres answers again (None: as ``away`` says)."""

    async def agencies_of(self, who: Who, ids: list[str]) -> dict[str, Registered]:
        self._answer(*ids)
        kind = "pendant" if who == "device" else None
        return {i: Registered("a1", kind) for i in ids if i in self.known}

    async def owntracks_caregiver(self, user: str, device: str) -> tuple[str, str] | None:
        self._answer(f"{user}/{device}")
        return ("cg-ot", "a1") if f"{user}/{device}" in self.known else None

    def _answer(self, *ids: str) -> None:
        self.asked.update(ids)
        if self.back_after is not None:
            self.away = self.back_after > 0
            self.back_after -= 1
        if self.away:
            raise StorageError("postgres: cannot look up: ConnectionRefusedError()")


def loc(caregiver: str) -> str:
    return f"ck/a1/cg/{caregiver}/loc"


def evt(device: str) -> str:
    return f"ck/a1/dev/{device}/evt"


async def check(registry: Registry, topic: str) -> None:
    await registry.check(route(topic), topic)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_answers_forget_the_least_recently_asked_first() -> None:
    answers: Answers[str, int] = Answers(size=3)
    for n, key in enumerate("abc"):
        answers.put(key, n, 0.0)
    assert answers.get("a") == (0, 0.0)  # "a" asked again: "b" is now the oldest
    answers.put("d", 3, 0.0)
    assert len(answers) == 3
    assert answers.get("b") is None
    assert [answers.get(k) for k in "acd"] == [(0, 0.0), (2, 0.0), (3, 0.0)]


async def test_the_cache_is_fresh_for_a_while_and_bounded(clock: Clock) -> None:
    store = Store(known={f"cg{n}" for n in range(10)})
    registry = Registry(store, clock, sleep=clock.sleep, cached=4)
    for n in range(10):
        await check(registry, loc(f"cg{n}"))
    await check(registry, loc("cg9"))  # fresh: not asked again
    await check(registry, loc("cg0"))  # forgotten: asked again
    assert (store.asked["cg9"], store.asked["cg0"]) == (1, 2)
    clock.now += HIT_TTL_S
    await check(registry, loc("cg9"))  # stale: asked again
    assert store.asked["cg9"] == 2


async def test_an_answer_once_had_stands_in_while_postgres_is_away(clock: Clock) -> None:
    store = Store(known={"cg1"})
    registry = Registry(store, clock, sleep=clock.sleep)
    await check(registry, loc("cg1"))
    with pytest.raises(RejectedPayload, match="unknown_caregiver"):
        await check(registry, loc("stranger"))
    clock.now += HIT_TTL_S
    store.away = True
    for _ in range(100):
        await check(registry, loc("cg1"))
        with pytest.raises(RejectedPayload, match="unknown_caregiver"):
            await check(registry, loc("stranger"))
    assert (store.asked["cg1"], store.asked["stranger"]) == (2, 1)  # once, then not until due
    assert clock.slept == []  # nobody waited
    store.away = False
    clock.now += registry.outage.wait_s()
    await check(registry, loc("cg1"))
    assert registry.outage.since is None


async def test_a_publisher_never_seen_waits_for_postgres_to_answer(clock: Clock) -> None:
    store = Store(known={"pendant"}, back_after=4)
    registry = Registry(store, clock, sleep=clock.sleep)
    await check(registry, evt("pendant"))  # held, asked again after each wait, then let in
    assert store.asked["pendant"] == 5
    assert len(clock.slept) == 4
    assert sum(clock.slept) < DEVICE_PATIENCE_S
    assert registry.outage.since is None


@pytest.mark.parametrize(
    ("topic", "patience_s"),
    [(evt("pendant"), DEVICE_PATIENCE_S), (loc("cg1"), PHONE_PATIENCE_S)],
)
async def test_past_its_patience_a_message_is_refused_and_so_are_the_next_at_once(
    clock: Clock, topic: str, patience_s: float
) -> None:
    store = Store(known={"pendant", "cg1"}, away=True)
    registry = Registry(store, clock, sleep=clock.sleep)
    with pytest.raises(RejectedPayload) as refused:
        await check(registry, topic)
    assert refused.value.reason == REGISTRY_UNAVAILABLE
    assert sum(clock.slept) == pytest.approx(patience_s)
    waited = len(clock.slept)
    with pytest.raises(RejectedPayload, match=REGISTRY_UNAVAILABLE):
        await check(registry, topic)
    assert len(clock.slept) == waited  # the outage has lasted: no wait again
    store.away = False
    clock.now += registry.outage.wait_s()
    await check(registry, topic)


async def test_an_owntracks_phone_is_looked_up_the_same_way(clock: Clock) -> None:
    phone = OwnTracksDevice("jane", "pixel")
    store = Store(known={"jane/pixel"}, back_after=2)
    registry = Registry(store, clock, sleep=clock.sleep)
    assert await registry.owntracks_caregiver(phone, "owntracks/jane/pixel") == ("cg-ot", "a1")
    assert len(clock.slept) == 2
    clock.now += HIT_TTL_S
    store.away = True
    assert await registry.owntracks_caregiver(phone, "owntracks/jane/pixel") == ("cg-ot", "a1")
    assert store.asked["jane/pixel"] == 4
