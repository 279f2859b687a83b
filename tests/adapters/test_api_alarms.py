"""The HTTP API's alarms and visit alerts, on the real Postgres and Redis: an agency's dispatcher
lists its alarms newest first a page at a time, filtered by status, kind and patient, and reads
one with its history (raised, repeated, acknowledged, cleared, who and when); she lists the
visit alerts, the open ones alone or all; anyone else is refused with a reason, unknown ids are
404 and bad filters 400."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
import redis.asyncio as aioredis

from adapters.storage.alarms import AlarmStore
from adapters.storage.postgres import Database
from adapters.storage.visit_store import VisitStore
from kernel.settings import Settings
from tests.adapters.scenes import World, seed
from tests.support import bearer
from visits.rules import AlertChange

pytestmark = pytest.mark.servers


def at(agency: str, alarm: str = "") -> str:
    return f"/v1/agencies/{agency}/alarms" + (f"/{alarm}" if alarm else "")


@pytest.fixture
async def world(db: Database) -> World:
    return await seed(db, caregivers=1)


async def test_the_list_is_newest_first_and_filtered_by_status_kind_and_patient(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World
) -> None:
    store, now = AlarmStore(db), time.time()
    device = f"device:{world.device.id}"
    offline = await store.raise_alarm(
        world.agency, device, "device_offline", "major", now - 30, patient_id=world.patient.id
    )
    battery = await store.raise_alarm(
        world.agency, device, "battery_low", "minor", now - 20, patient_id=world.patient.id
    )
    lonely = await store.raise_alarm(world.agency, "agency", "notify_failed", "warning", now - 10)
    assert not isinstance(await store.acknowledge(battery.id, world.agency, "d", now, None), str)
    assert not isinstance(await store.clear(offline.id, world.agency, "d", now, None), str)
    desk = bearer(settings, "dispatcher", "desk", world.agency)

    async def ids(**params: object) -> list[str]:
        got = await api.get(at(world.agency), params=params, headers=desk)  # type: ignore[arg-type]
        assert got.status_code == 200, got.text
        return [a["id"] for a in got.json()["items"]]

    assert await ids() == [lonely.id, battery.id, offline.id]
    assert await ids(status="active_unack") == [lonely.id]
    assert await ids(status="active_ack") == [battery.id]
    assert await ids(status="cleared_unack") == [offline.id]
    assert await ids(status=["active_unack", "active_ack"]) == [lonely.id, battery.id]
    assert await ids(kind="battery_low") == [battery.id]
    assert await ids(patient_id=world.patient.id) == [battery.id, offline.id]
    assert await ids(patient_id=world.patient.id, status="active_ack") == [battery.id]

    page = (await api.get(at(world.agency), params={"limit": 1}, headers=desk)).json()
    shown = page["items"][0]
    assert (shown["id"], shown["severity"], shown["source"]) == (lonely.id, "warning", "agency")
    seen = [shown["id"]]
    while page["next"] is not None:
        params = {"limit": 1, "after": page["next"]}
        page = (await api.get(at(world.agency), params=params, headers=desk)).json()
        seen += [a["id"] for a in page["items"]]
    assert seen == [lonely.id, battery.id, offline.id]


async def test_one_alarm_with_its_history(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World
) -> None:
    store, now = AlarmStore(db), time.time()
    source = f"device:{world.device.id}"
    raised = await store.raise_alarm(
        world.agency, source, "device_offline", "major", now - 3, patient_id=world.patient.id
    )
    await store.raise_alarm(world.agency, source, "device_offline", "major", now - 2)
    assert not isinstance(
        await store.acknowledge(raised.id, world.agency, "dispatcher:ann", now - 1, None), str
    )
    assert not isinstance(
        await store.clear(raised.id, world.agency, "dispatcher:bo", now, None), str
    )

    read = await api.get(
        at(world.agency, raised.id), headers=bearer(settings, "dispatcher", "d", world.agency)
    )
    assert read.status_code == 200
    body = read.json()
    assert (body["status"], body["count"], body["patient_id"]) == (
        "cleared_ack",
        2,
        world.patient.id,
    )
    assert (body["acknowledged_by"], body["cleared_by"]) == ("dispatcher:ann", "dispatcher:bo")
    assert [(h["kind"], h["actor"]) for h in body["history"]] == [
        ("alarm_raised", "rule:device_offline"),
        ("alarm_repeated", "rule:device_offline"),
        ("alarm_acknowledged", "dispatcher:ann"),
        ("alarm_cleared", "dispatcher:bo"),
    ]
    assert body["history"][1]["detail"] == {"count": 2}


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
    alarm = await AlarmStore(db).raise_alarm(world.agency, "agency", "k", "minor", time.time())
    headers = {
        "another agency's dispatcher": bearer(settings, "dispatcher", "d", "elsewhere"),
        "a caregiver": bearer(settings, "caregiver", world.cg(0), world.agency),
        "a family member": bearer(settings, "family", "f", world.agency),
        "nobody": {},
    }[who]
    for url in (
        at(world.agency),
        at(world.agency, alarm.id),
        f"/v1/agencies/{world.agency}/visit-alerts",
    ):
        refused = await api.get(url, headers=headers)
        assert (refused.status_code, refused.json()["reason"]) == (status, reason)


async def test_unknown_and_other_agencies_alarms_are_404(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World
) -> None:
    theirs = await seed(db)
    their_alarm = await AlarmStore(db).raise_alarm(
        theirs.agency, "agency", "k", "minor", time.time()
    )
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    for alarm in (str(uuid.uuid4()), "not-a-uuid", their_alarm.id):
        missing = await api.get(at(world.agency, alarm), headers=desk)
        assert (missing.status_code, missing.json()["reason"]) == (404, "unknown_alarm")
    assert their_alarm.id not in (await api.get(at(world.agency), headers=desk)).text


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"status": "angry"}, "malformed"),
        ({"after": "x"}, "bad_cursor"),
        ({"limit": 0}, "malformed"),
        ({"kind": "k" * 65}, "malformed"),
    ],
)
async def test_bad_filters_are_a_400_with_a_reason(
    api: httpx.AsyncClient, settings: Settings, world: World, params: dict[str, object], reason: str
) -> None:
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    refused = await api.get(at(world.agency), params=params, headers=desk)  # type: ignore[arg-type]
    assert (refused.status_code, refused.json()["reason"]) == (400, reason)
    assert "k" * 65 not in refused.text


async def test_visit_alerts_open_alone_or_all_a_page_at_a_time(
    api: httpx.AsyncClient,
    settings: Settings,
    db: Database,
    redis: aioredis.Redis,
    world: World,
) -> None:
    now = time.time()
    store = VisitStore(db, redis, settings)

    def change(kind: str, visit: str, raised: bool, at_s: float) -> AlertChange:
        return AlertChange(kind, raised, world.agency, world.patient.id, world.cg(0), visit, at_s)  # type: ignore[arg-type]

    await store.apply_alerts([change("late", "v1", True, now - 30)])
    await store.apply_alerts([change("missed", "v2", True, now - 20)])
    await store.apply_alerts([change("early_departure", "v3", True, now - 10)])
    await store.apply_alerts([change("missed", "v2", False, now)])
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    path = f"/v1/agencies/{world.agency}/visit-alerts"

    open_now = (await api.get(path, headers=desk)).json()
    assert [(a["kind"], a["visit_id"]) for a in open_now["items"]] == [
        ("early_departure", "v3"),
        ("late", "v1"),
    ]
    assert all(a["cleared_at"] is None for a in open_now["items"])
    every = (await api.get(path, params={"open": "false"}, headers=desk)).json()
    assert [a["visit_id"] for a in every["items"]] == ["v3", "v2", "v1"]
    assert every["items"][1]["cleared_at"] is not None

    seen: list[str] = []
    page = (await api.get(path, params={"open": "false", "limit": 2}, headers=desk)).json()
    seen += [a["visit_id"] for a in page["items"]]
    assert page["next"] is not None
    page = (
        await api.get(
            path, params={"open": "false", "limit": 2, "after": page["next"]}, headers=desk
        )
    ).json()
    seen += [a["visit_id"] for a in page["items"]]
    assert (seen, page["next"]) == (["v3", "v2", "v1"], None)
    for odd in ("v3", "¹", "١٢"):  # digits not ASCII too
        bad = await api.get(path, params={"after": odd}, headers=desk)
        assert (bad.status_code, bad.json()["reason"]) == (400, "bad_cursor")
