"""The fixes worker remembers each caregiver's last accepted fix between batches: it asks the
live index in Redis only about caregivers it does not know, and judges every batch exactly as
it would judging against Redis."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import AsyncIterator, Mapping

import pytest

from adapters.metrics import FixMetrics
from adapters.storage.history import History
from geofence.quality import AgencyPolicies, Position
from kernel.contracts import FixEvent
from kernel.settings import Settings
from streams.fix_flow import LastAccepted, apply_screening, screen_fixes
from streams.runtime import Runtime

pytestmark = pytest.mark.servers
AGENCY = "la-agency"
T0 = float(int(time.time()) - 3600)


@pytest.fixture
async def rt(settings: Settings, first_migration: list[int]) -> AsyncIterator[Runtime]:
    runtime = await Runtime(settings, dispatching=False).ready()
    yield runtime
    await runtime.close()


def fix(cg: str, t: float, north_m: float = 0.0) -> FixEvent:
    return FixEvent(
        event_id=f"{cg}:{t}",
        agency_id=AGENCY,
        caregiver_id=cg,
        lat=53.8 + north_m / 111_000,
        lon=-1.55,
        ts=T0 + t,
        acc=5.0,
        received_at=T0 + t + 0.2,
    )


def _where(fixes: Mapping[str, Position]) -> dict[str, tuple[float, float, float, float | None]]:
    return {cid: (p.lat, p.lon, p.ts, p.acc) for cid, p in fixes.items()}


async def test_strangers_are_asked_about_and_the_known_are_remembered(rt: Runtime) -> None:
    cg, newcomer = f"la-{uuid.uuid4().hex[:6]}", f"la-{uuid.uuid4().hex[:6]}"
    await rt.live.update([fix(cg, 0)])
    last = LastAccepted()
    assert _where(await last.of(rt.live, [cg, newcomer])) == _where({cg: fix(cg, 0)})
    last.accepted([fix(cg, 10, 50.0)])
    await rt.live.update([fix(newcomer, 5)])  # written behind its back
    assert _where(await last.of(rt.live, [cg, newcomer])) == _where({cg: fix(cg, 10, 50.0)})
    last.forget([newcomer])
    assert (await last.of(rt.live, [newcomer]))[newcomer].ts == T0 + 5
    last.forget()
    assert (await last.of(rt.live, [cg]))[cg].ts == T0  # what Redis has


async def test_batches_are_judged_as_against_redis(rt: Runtime) -> None:
    """Duplicates, late fixes, jumps and too-frequent fixes among them, batch after batch."""
    rng = random.Random(5)
    people = [f"la-{uuid.uuid4().hex[:6]}" for _ in range(6)]
    clock = {cg: 0.0 for cg in people}
    last, history, policies = LastAccepted(), History(rt.db), AgencyPolicies()
    for _ in range(12):
        batch = []
        for _ in range(20):
            cg = rng.choice(people)
            clock[cg] += rng.choice([-3.0, 0.0, 0.5, 2.0, 5.0, 30.0])
            batch.append(fix(cg, clock[cg], rng.choice([0.0, 40.0, 90_000.0])))
        against_redis = await screen_fixes(rt, batch, policies, FixMetrics())
        remembered = await screen_fixes(rt, batch, policies, FixMetrics(), last)
        assert remembered.live == against_redis.live
        assert remembered.history_only == against_redis.history_only
        assert remembered.reasons == against_redis.reasons
        assert await apply_screening(rt, remembered, history)
    assert sum(against_redis.reasons.values()) > 0
