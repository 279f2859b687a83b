"""``careknot visit check-in|check-out``: a person's word when GPS failed, kept for review."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from adapters.storage.postgres import CaregiverRow, Database, PatientRow
from adapters.storage.visit_store import VisitStore
from kernel.settings import Settings
from tests.adapters.cli_runs import careknot
from visits.rules import Visit

pytestmark = pytest.mark.servers


@pytest.fixture
async def visit(migrated: Settings) -> AsyncIterator[tuple[Settings, VisitStore, str]]:
    tag = secrets.token_hex(3)
    agency, cg, patient, visit_id = f"mv-{tag}", f"mv-cg-{tag}", f"mv-p-{tag}", f"mv-v-{tag}"
    redis = aioredis.Redis.from_url(migrated.redis_url)
    async with Database(migrated) as db:
        await db.upsert_agency(agency, "Manual Visits")
        await db.upsert_caregivers([CaregiverRow(cg, agency, "Mo Manual")])
        await db.upsert_patients([PatientRow(patient, agency, "Pat", 53.8, -1.55)])
        store = VisitStore(db, redis, migrated)
        start = time.time() - 300
        await store.add_visits(
            [Visit(visit_id, agency, patient, cg, start, start + 1800, 53.8, -1.55)]
        )
        yield migrated, store, visit_id
    await redis.aclose()


async def test_manual_check_in_then_out_is_recorded_with_its_reason_for_review(
    visit: tuple[Settings, VisitStore, str],
) -> None:
    settings, store, visit_id = visit
    done = careknot(settings, "visit", "check-in", visit_id, "--reason", "no GPS in the flats")
    assert done.returncode == 0, done.stderr
    record = await store.record(visit_id)
    assert record is not None and record.state == "arrived"
    assert record.needs_review is True
    assert record.check_in is not None and record.check_in.reason == "no GPS in the flats"
    assert record.needs_review

    again = careknot(settings, "visit", "check-in", visit_id, "--reason", "twice")
    assert again.returncode == 1  # already in: nothing to do

    out = careknot(settings, "visit", "check-out", visit_id, "--reason", "phone flat")
    assert out.returncode == 0, out.stderr
    record = await store.record(visit_id)
    assert record is not None and record.state == "left"
    assert record.check_out is not None and record.check_out.reason == "phone flat"


def test_an_unknown_visit_is_refused(migrated: Settings) -> None:
    done = careknot(migrated, "visit", "check-in", "no-such-visit", "--reason", "x")
    assert done.returncode == 1
    assert "unknown" in done.stderr
