"""The HTTP API's incidents, on the real Postgres and Redis: an agency's dispatcher lists them
newest first a page at a time, filtered by state, by when they were opened and by patient, and
reads one with its timeline from the event log; another agency's dispatcher, a caregiver, a
family member and a missing token are refused with their reasons; unknown ids are 404 and bad
windows, cursors and states are 400 with a reason."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from adapters.storage.handovers import HandoverStore
from adapters.storage.incidents import IncidentStore
from adapters.storage.postgres import Database, PatientRow
from kernel.settings import Settings
from tests.adapters.scenes import LEEDS, World, seed
from tests.support import bearer

pytestmark = pytest.mark.servers

HOUR = 3600.0


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


def at(agency: str, incident: str = "") -> str:
    return f"/v1/agencies/{agency}/incidents" + (f"/{incident}" if incident else "")


async def opened(db: Database, w: World, at_s: float, patient: str = "") -> str:
    row = await IncidentStore(db).open(
        event_id=f"ev-{uuid.uuid4().hex[:8]}",
        agency_id=w.agency,
        patient_id=patient or w.patient.id,
        device_id=w.device.id,
        kind="fall",
        severity=1,
        at=at_s,
    )
    assert row is not None
    return row.id


@pytest.fixture
async def world(db: Database) -> World:
    return await seed(db, caregivers=2)


async def test_the_list_is_newest_first_and_filtered(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World
) -> None:
    now = time.time()
    old, middle, new = [await opened(db, world, now - h * HOUR) for h in (3, 2, 1)]
    handovers = HandoverStore(db)
    assert (await handovers.resolve(old, world.agency, "dispatcher:d", now)).done
    assert (await handovers.assign(middle, world.cg(0), world.agency, "dispatcher:d", now)).done
    desk = bearer(settings, "dispatcher", "desk", world.agency)

    listed = await api.get(at(world.agency), headers=desk)
    assert listed.status_code == 200
    assert [i["id"] for i in listed.json()["items"]] == [new, middle, old]
    assert listed.json()["next"] is None
    states = {i["id"]: (i["state"], i["assignee_id"]) for i in listed.json()["items"]}
    assert states == {
        new: ("open", None),
        middle: ("assigned", world.cg(0)),
        old: ("resolved", None),
    }

    async def ids(**params: str | list[str]) -> list[str]:
        got = await api.get(at(world.agency), params=params, headers=desk)
        assert got.status_code == 200, got.text
        return [i["id"] for i in got.json()["items"]]

    assert await ids(state="resolved") == [old]
    assert await ids(state=["open", "assigned"]) == [new, middle]
    assert await ids(since=iso(now - 2.5 * HOUR)) == [new, middle]
    assert await ids(since=iso(now - 2.5 * HOUR), until=iso(now - 1.5 * HOUR)) == [middle]
    assert await ids(until=iso(now - 2.5 * HOUR)) == [old]
    assert await ids(patient_id=world.patient.id) == [new, middle, old]

    other = PatientRow(f"p2-{uuid.uuid4().hex[:8]}", world.agency, "Ada", *LEEDS)
    await db.upsert_patients([other])
    hers = await opened(db, world, now - 0.5 * HOUR, patient=other.id)
    assert await ids(patient_id=other.id) == [hers]
    assert await ids(patient_id=world.patient.id, state="open") == [new]


async def test_the_list_comes_a_page_at_a_time_without_repeats(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World
) -> None:
    now = time.time()
    made = [await opened(db, world, now - m * 60) for m in range(5)]  # newest first
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    seen: list[str] = []
    after = ""
    pages = 0
    while True:
        page = await api.get(at(world.agency), params={"limit": 2, "after": after}, headers=desk)
        assert page.status_code == 200
        seen += [i["id"] for i in page.json()["items"]]
        pages += 1
        if page.json()["next"] is None:
            break
        after = page.json()["next"]
    assert seen == made
    assert pages == 3


async def test_one_incident_with_its_timeline(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World
) -> None:
    now = time.time()
    incident = await opened(db, world, now - 60)
    handovers = HandoverStore(db)
    assert (
        await handovers.assign(incident, world.cg(1), world.agency, "dispatcher:desk", now)
    ).done
    assert (await handovers.resolve(incident, world.agency, "dispatcher:desk", now + 1)).done
    desk = bearer(settings, "dispatcher", "desk", world.agency)

    read = await api.get(at(world.agency, incident), headers=desk)
    assert read.status_code == 200
    body = read.json()
    assert (body["id"], body["state"], body["patient_id"]) == (
        incident,
        "resolved",
        world.patient.id,
    )
    assert body["device_id"] == world.device.id and body["kind"] == "fall"
    kinds = [(s["kind"], s["actor"]) for s in body["timeline"]]
    assert kinds == [
        ("incident_opened", f"device:{world.device.id}"),
        ("incident_assigned", "dispatcher:desk"),
        ("incident_resolved", "dispatcher:desk"),
    ]
    assert body["timeline"][1]["detail"]["caregiver_id"] == world.cg(1)
    assert read.headers["ETag"]


@pytest.mark.parametrize(
    ("who", "status", "reason"),
    [
        ("another agency's dispatcher", 403, "other_agency"),
        ("a caregiver", 403, "forbidden"),
        ("a family member", 403, "forbidden"),
        ("nobody", 401, "unauthorised"),
    ],
)
async def test_who_may_not_read_is_refused_with_a_reason(
    api: httpx.AsyncClient,
    settings: Settings,
    db: Database,
    world: World,
    who: str,
    status: int,
    reason: str,
) -> None:
    incident = await opened(db, world, time.time())
    headers = {
        "another agency's dispatcher": bearer(settings, "dispatcher", "d", "elsewhere"),
        "a caregiver": bearer(settings, "caregiver", world.cg(0), world.agency),
        "a family member": bearer(settings, "family", "f", world.agency),
        "nobody": {},
    }[who]
    for url in (at(world.agency), at(world.agency, incident)):
        refused = await api.get(url, headers=headers)
        assert (refused.status_code, refused.json()["reason"]) == (status, reason)
        assert incident not in refused.text


async def test_unknown_and_other_agencies_incidents_are_404(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World
) -> None:
    theirs = await seed(db)
    their_incident = await opened(db, theirs, time.time())
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    for incident in (str(uuid.uuid4()), "not-a-uuid", their_incident):
        missing = await api.get(at(world.agency, incident), headers=desk)
        assert (missing.status_code, missing.json()["reason"]) == (404, "unknown_incident")
    listed = await api.get(at(world.agency), headers=desk)
    assert their_incident not in listed.text


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "bad_window"),
        ({"since": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "bad_window"),
        ({"after": "nonsense"}, "bad_cursor"),
        ({"after": "12.not-a-uuid"}, "bad_cursor"),
        ({"state": "lost"}, "malformed"),
        ({"since": "yesterday"}, "malformed"),
        ({"limit": 0}, "malformed"),
        ({"limit": 501}, "malformed"),
        ({"patient_id": "bad id!"}, "malformed"),
    ],
)
async def test_bad_filters_are_a_400_with_a_reason(
    api: httpx.AsyncClient, settings: Settings, world: World, params: dict[str, object], reason: str
) -> None:
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    refused = await api.get(at(world.agency), params=params, headers=desk)  # type: ignore[arg-type]
    assert (refused.status_code, refused.json()["reason"]) == (400, reason)
