"""The HTTP API's visit records, on the real Postgres and Redis: a visit's state, its check-in
and check-out evidence and its alerts, read by the agency's dispatcher and by the caregiver
whose visit it is (another caregiver, a family member, another agency are refused); the visits
report over a period as JSON and CSV, the same report ``careknot report visits`` renders; bad
periods are a 400 with a reason, unknown visits 404."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC, datetime

import httpx
import pytest
import redis.asyncio as aioredis

from adapters.storage.postgres import Database
from adapters.storage.visit_store import VisitStore
from kernel.settings import Settings
from tests.adapters.scenes import LEEDS, World, seed
from tests.support import bearer
from visits.report import render
from visits.rules import Evidence, Visit, VisitRecord

pytestmark = pytest.mark.servers

HOUR = 3600.0


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


@pytest.fixture
async def world(db: Database) -> World:
    return await seed(db, caregivers=2)


@pytest.fixture
def store(db: Database, redis: aioredis.Redis, settings: Settings) -> VisitStore:
    return VisitStore(db, redis, settings)


async def visited(
    store: VisitStore, w: World, visit_id: str, start: float, caregiver: int = 0
) -> VisitRecord:
    """A visit of ``w``'s caregiver, checked in by GPS four minutes late and out by hand."""
    visit = Visit(
        visit_id, w.agency, w.patient.id, w.cg(caregiver), start, start + HOUR, *LEEDS, ("meds",)
    )
    await store.add_visits([visit])
    record = VisitRecord(
        visit,
        "left",
        check_in=Evidence(start + 240, LEEDS[0], LEEDS[1], 9.0, 12.5, "gps", "", start + 300),
        check_out=Evidence(start + HOUR, source="manual", reason="phone flat"),
        alerts=frozenset({"early_departure"}),
    )
    saved = await store.save([record])
    assert len(saved) == 1
    return saved[0]


async def test_a_dispatcher_and_the_caregiver_read_a_visits_evidence(
    api: httpx.AsyncClient, settings: Settings, store: VisitStore, world: World
) -> None:
    start = float(int(time.time() - 2 * HOUR))
    await visited(store, world, f"{world.agency}-v1", start)
    path = f"/v1/agencies/{world.agency}/visits/{world.agency}-v1/evidence"
    for who in (
        bearer(settings, "dispatcher", "desk", world.agency),
        bearer(settings, "caregiver", world.cg(0), world.agency),
    ):
        read = await api.get(path, headers=who)
        assert read.status_code == 200, read.text
        body = read.json()
        assert (body["state"], body["caregiver_id"], body["tasks"]) == (
            "left",
            world.cg(0),
            ["meds"],
        )
        assert body["check_in"]["source"] == "gps"
        assert body["check_in"]["distance_m"] == 12.5
        assert datetime.fromisoformat(body["check_in"]["at"]).timestamp() == start + 240
        assert datetime.fromisoformat(body["check_in"]["fix_at"]).timestamp() == start + 300
        assert (body["check_out"]["source"], body["check_out"]["reason"]) == (
            "manual",
            "phone flat",
        )
        assert body["alerts"] == ["early_departure"]
        assert body["needs_review"] is True
        assert read.headers["ETag"]


@pytest.mark.parametrize(
    ("who", "status", "reason"),
    [
        ("another caregiver", 403, "forbidden"),
        ("a family member", 403, "forbidden"),
        ("another agency's dispatcher", 403, "other_agency"),
        ("nobody", 401, "unauthorised"),
    ],
)
async def test_who_may_not_read_a_visit_is_refused_with_a_reason(
    api: httpx.AsyncClient,
    settings: Settings,
    store: VisitStore,
    world: World,
    who: str,
    status: int,
    reason: str,
) -> None:
    await visited(store, world, f"{world.agency}-v2", time.time() - 2 * HOUR)
    headers = {
        "another caregiver": bearer(settings, "caregiver", world.cg(1), world.agency),
        "a family member": bearer(settings, "family", "f", world.agency),
        "another agency's dispatcher": bearer(settings, "dispatcher", "d", "elsewhere"),
        "nobody": {},
    }[who]
    refused = await api.get(
        f"/v1/agencies/{world.agency}/visits/{world.agency}-v2/evidence", headers=headers
    )
    assert (refused.status_code, refused.json()["reason"]) == (status, reason)
    assert "phone flat" not in refused.text


async def test_unknown_and_other_agencies_visits_are_404_to_a_dispatcher(
    api: httpx.AsyncClient, settings: Settings, db: Database, store: VisitStore, world: World
) -> None:
    theirs = await seed(db, caregivers=1)
    await visited(store, theirs, f"{theirs.agency}-v", time.time() - 2 * HOUR)
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    for visit in ("no-such-visit", f"{theirs.agency}-v"):
        missing = await api.get(
            f"/v1/agencies/{world.agency}/visits/{visit}/evidence", headers=desk
        )
        assert (missing.status_code, missing.json()["reason"]) == (404, "unknown_visit")
    # a caregiver asking after a visit that is not hers learns nothing of whether it exists
    mine = bearer(settings, "caregiver", world.cg(0), world.agency)
    hidden = await api.get(
        f"/v1/agencies/{world.agency}/visits/no-such-visit/evidence", headers=mine
    )
    assert (hidden.status_code, hidden.json()["reason"]) == (403, "forbidden")


async def test_the_visits_report_as_json_and_csv(
    api: httpx.AsyncClient, settings: Settings, store: VisitStore, world: World
) -> None:
    start = float(int(time.time() - 5 * HOUR))
    await visited(store, world, f"{world.agency}-r1", start)
    await visited(store, world, f"{world.agency}-r2", start + 2 * HOUR, caregiver=1)
    await visited(store, world, f"{world.agency}-out", start - 48 * HOUR)  # before the period
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    period = {"since": iso(start - HOUR), "until": iso(start + 3 * HOUR)}
    path = f"/v1/agencies/{world.agency}/visit-report"

    as_json = await api.get(path, params=period, headers=desk)
    assert as_json.status_code == 200 and as_json.headers["content-type"] == "application/json"
    body = as_json.json()
    assert [v["visit_id"] for v in body["visits"]] == [f"{world.agency}-r1", f"{world.agency}-r2"]
    assert [
        (c["caregiver_id"], c["verified"], c["on_time"], c["manual"]) for c in body["caregivers"]
    ] == [
        (world.cg(0), 1, 1, 1),
        (world.cg(1), 1, 1, 1),
    ]
    records = await store.in_period(world.agency, start - HOUR, start + 3 * HOUR)
    meta = {"agency": world.agency, "from": iso(start - HOUR), "to": iso(start + 3 * HOUR)}
    assert body == json.loads(render(records, "json", meta))

    as_csv = await api.get(path, params={**period, "format": "csv"}, headers=desk)
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(r["caregiver_id"], r["visits"], r["verified_hours"]) for r in rows] == [
        (world.cg(0), "1", "0.93"),
        (world.cg(1), "1", "0.93"),
    ]


@pytest.mark.parametrize(
    ("params", "status", "reason"),
    [
        (
            {"since": "2026-01-01T00:00:00Z", "until": "2026-06-01T00:00:00Z"},
            400,
            "window_too_long",
        ),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 400, "bad_window"),
        ({"since": "2026-01-01T00:00:00Z"}, 400, "malformed"),
        ({"since": "2026-01-01", "until": "2026-01-02", "format": "pdf"}, 400, "malformed"),
    ],
)
async def test_bad_report_periods_are_a_400_with_a_reason(
    api: httpx.AsyncClient,
    settings: Settings,
    world: World,
    params: dict[str, str],
    status: int,
    reason: str,
) -> None:
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    refused = await api.get(
        f"/v1/agencies/{world.agency}/visit-report", params=params, headers=desk
    )
    assert (refused.status_code, refused.json()["reason"]) == (status, reason)


async def test_only_the_agencys_dispatchers_read_the_report(
    api: httpx.AsyncClient, settings: Settings, world: World
) -> None:
    period = {"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"}
    path = f"/v1/agencies/{world.agency}/visit-report"
    for headers, status, reason in (
        (bearer(settings, "caregiver", world.cg(0), world.agency), 403, "forbidden"),
        (bearer(settings, "dispatcher", "d", "elsewhere"), 403, "other_agency"),
        ({}, 401, "unauthorised"),
    ):
        refused = await api.get(path, params=period, headers=headers)
        assert (refused.status_code, refused.json()["reason"]) == (status, reason)
