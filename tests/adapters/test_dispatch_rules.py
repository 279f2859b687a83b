"""Dispatch rules against the real Postgres and Redis: who is never offered, incidents joined,
escalation in time, manual assignment, resolution, the audit timeline and a restart.

Fixtures and the small world come from ``test_stores`` (same servers, a namespace of this
module's own).
"""

from __future__ import annotations

import time

import pytest

from careknot.storage.incidents import IncidentStore
from careknot.storage.postgres import Database
from careknot.storage.roster import Roster
from dispatch.eligibility import AgencyRules
from dispatch.worktime import HOUR_S
from tests.adapters import test_stores as stores
from tests.adapters.test_stores import SceneMaker, seed

# the fixtures of test_stores, in this module's namespace (so with a namespace of its own)
settings = stores.settings
first_migration = stores.first_migration
db = stores.db
redis = stores.redis
live = stores.live
box = stores.box
make_scene = stores.make_scene

pytestmark = pytest.mark.servers


async def test_roster_rules_out_expired_off_shift_and_tired_caregivers(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([100, 200, 300, 400, 500])
    roster, now = Roster(db), s.clock.now
    await roster.set_certificate(s.w.cg(0), "moving_and_handling", now - 60)
    await roster.add_shift(s.w.cg(1), now - 30 * HOUR_S, now - 22 * HOUR_S)  # yesterday's
    await roster.add_worked(s.w.cg(2), now - 14 * HOUR_S, now - 60)  # no 11 h rest left
    await roster.set_certificate(s.w.cg(3), "dbs", now - 1)
    await roster.set_certificate(s.w.cg(4), "moving_and_handling", now + 86400)
    await roster.add_shift(s.w.cg(4), now - HOUR_S, now + HOUR_S)

    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    assert await s.offered() == [0, 0, 0, 0, 1]
    s.clock.now += 1
    await s.answer(4, "decline")  # nobody else may take it: escalated
    row = await IncidentStore(db).get(incident.id)
    assert row is not None
    assert row.state == "escalated"
    assert await s.offered() == [0, 0, 0, 0, 1]


async def test_strict_agency_needs_skills_and_a_shift(make_scene: SceneMaker, db: Database) -> None:
    s = await make_scene([100, 200, 300])
    roster, now = Roster(db), s.clock.now
    await roster.set_rules(s.w.agency, AgencyRules(require_skills=True, require_shift=True))
    await db.pool.execute(
        "UPDATE caregivers SET skills = $2 WHERE id = ANY($1::text[])",
        [s.w.cg(0), s.w.cg(2)],
        ["moving_and_handling"],
    )
    await roster.add_shift(s.w.cg(1), now - HOUR_S, now + HOUR_S)  # on shift, no skill
    await roster.add_shift(s.w.cg(2), now - HOUR_S, now + HOUR_S)  # on shift, skilled
    # cg0 is skilled but has no shift rows: the agency requires one
    await s.dispatcher.on_device_event(s.event())
    assert await s.offered() == [0, 0, 1]


async def test_agencies_without_roster_data_dispatch_to_whoever_is_free(
    make_scene: SceneMaker,
) -> None:
    s = await make_scene([100, 200])
    await s.dispatcher.on_device_event(s.event())
    assert await s.offered() == [1, 0]


async def test_the_roster_reads_fresh_rows_after_its_cache_expires(db: Database) -> None:
    ticks = [0.0]
    roster = Roster(db, ttl_s=5, clock=lambda: ticks[0])
    w, now = await seed(db, caregivers=1), time.time()
    (before,) = (await roster.profiles([w.cg(0)], now)).values()
    assert before.certificates == {}
    await db.pool.execute(
        "INSERT INTO certificates(caregiver_id, kind, expires_at) VALUES ($1, 'dbs', now())",
        w.cg(0),
    )
    assert (await roster.profiles([w.cg(0)], now))[w.cg(0)].certificates == {}  # cached
    ticks[0] = 5.0
    assert set((await roster.profiles([w.cg(0)], now))[w.cg(0)].certificates) == {"dbs"}
    assert (await roster.profiles(["nobody"], now))["nobody"] == before
