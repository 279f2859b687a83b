"""Worked time from visits, on the real Postgres: what eligibility reads of a caregiver's hours
(``Roster.profiles``) holds her visits from check-in to check-out, and a visit she is at now up
to now; a visit she never checked in to counts nothing. So the working-time rules judge the
hours she really worked: a long day of visits leaves her no 11 hours' rest."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from adapters.storage.postgres import CaregiverRow, Database, PatientRow
from adapters.storage.roster import Roster
from adapters.storage.visit_store import VisitStore
from dispatch.worktime import HOUR_S, Period, daily_rest_ok
from kernel.settings import Settings
from visits.rules import Evidence, Visit, VisitState

pytestmark = pytest.mark.servers

NOW = float(int(time.time()))


@pytest.fixture
async def caregiver(db: Database) -> str:
    agency = f"wk-{uuid.uuid4().hex[:8]}"
    await db.upsert_agency(agency, "Worked Care")
    await db.upsert_patients([PatientRow(f"{agency}.p", agency, "Ada", 53.8, -1.55)])
    await db.upsert_caregivers([CaregiverRow(f"{agency}.cg", agency, "Cara")])
    return f"{agency}.cg"


async def _visit(
    store: VisitStore,
    caregiver: str,
    name: str,
    rostered: tuple[float, float],
    state: VisitState,
    came: float | None,
    went: float | None,
) -> None:
    agency, _ = caregiver.split(".")
    visit = Visit(f"{caregiver}.{name}", agency, f"{agency}.p", caregiver, *rostered, 53.8, -1.55)
    await store.add_visits([visit])
    record = await store.record(visit.visit_id)
    assert record is not None
    moved = replace(
        record,
        state=state,
        check_in=None if came is None else Evidence(at=came),
        check_out=None if went is None else Evidence(at=went),
    )
    assert await store.save([moved])


async def test_her_visits_from_check_in_to_check_out_are_her_worked_time(
    db: Database, redis: aioredis.Redis, settings: Settings, caregiver: str
) -> None:
    store = VisitStore(db, redis, settings)
    h = HOUR_S
    # checked in late and out early: the hours she was there count, not the rostered ones
    await _visit(
        store, caregiver, "a", (NOW - 14 * h, NOW - 10 * h), "left", NOW - 13 * h, NOW - 11 * h
    )
    await _visit(
        store, caregiver, "b", (NOW - 9 * h, NOW - 5 * h), "left", NOW - 9 * h, NOW - 4 * h
    )
    await _visit(store, caregiver, "c", (NOW - 1 * h, NOW + 1 * h), "in_visit", NOW - 1 * h, None)
    await _visit(store, caregiver, "d", (NOW - 4 * h, NOW - 3 * h), "missed", None, None)
    await _visit(store, caregiver, "e", (NOW + 2 * h, NOW + 3 * h), "scheduled", None, None)

    profile = (await Roster(db).profiles([caregiver], NOW))[caregiver]
    assert sorted(profile.worked, key=lambda p: p.start) == [
        Period(NOW - 13 * h, NOW - 11 * h),
        Period(NOW - 9 * h, NOW - 4 * h),
        Period(NOW - 1 * h, NOW),
    ]
    # the day ending with an hour's response (23 h back to an hour on) holds at most 10 hours'
    # rest, 23 h back to 13 h back: without the visits it would hold 23
    assert not daily_rest_ok(profile.worked, NOW)


async def test_a_caregiver_with_no_visit_checked_in_has_worked_nothing(
    db: Database, redis: aioredis.Redis, settings: Settings, caregiver: str
) -> None:
    store = VisitStore(db, redis, settings)
    await _visit(store, caregiver, "x", (NOW - 3 * HOUR_S, NOW - 2 * HOUR_S), "missed", None, None)
    profile = (await Roster(db).profiles([caregiver], NOW))[caregiver]
    assert profile.worked == ()
    assert daily_rest_ok(profile.worked, NOW)
