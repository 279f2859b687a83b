"""Dispatchers' commands through the HTTP API, on the real Postgres, Redis and Kafka (tansu): an
assign, a resolve and a hand on an alarm are answered 202 with the command's id, land on the
offer-answers topic keyed by their incident or alarm as the gateway's do, and the dispatch
worker's own handling of what it reads there decides them; the API reads the outcome back
(pending, then done or refused with the worker's reason). A retry with the same
Idempotency-Key is one command; the same key asking something else is refused. Anyone but the
agency's dispatchers is refused with a reason; unknown incidents, alarms and commands are 404,
bad input 400."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiokafka.structs import ConsumerRecord

from adapters.storage.alarms import AlarmStore
from adapters.storage.connection import RedisConnection
from adapters.storage.incidents import IncidentStore
from adapters.storage.postgres import Database
from kernel import keys
from kernel.contracts import AlarmCommand, DispatcherCommand
from kernel.settings import Settings
from streams.decoding import decode_answer
from streams.dispatcher import Dispatcher
from tests.adapters.scenes import World, seed
from tests.support import bearer, kafka_reader

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def worker(settings: Settings, db: Database, redis: aioredis.Redis) -> Dispatcher:
    """The dispatch worker's handling of the offer-answers topic (its Faust agent calls it)."""
    return Dispatcher(settings, db, RedisConnection(redis))


@pytest.fixture
async def world(db: Database) -> World:
    return await seed(db, caregivers=2)


async def opened(db: Database, w: World) -> str:
    row = await IncidentStore(db).open(
        event_id=f"ev-{uuid.uuid4().hex[:8]}",
        agency_id=w.agency,
        patient_id=w.patient.id,
        device_id=w.device.id,
        kind="fall",
        severity=1,
        at=time.time(),
    )
    assert row is not None
    return row.id


async def on_topic(
    settings: Settings, command_id: str, count: int = 1
) -> list[ConsumerRecord[bytes, bytes]]:
    """The offer-answers records of the command, once ``count`` of them are there."""
    found: list[ConsumerRecord[bytes, bytes]] = []
    async with kafka_reader(settings, keys.OFFER_ANSWERS) as reader, asyncio.timeout(30):
        while len(found) < count:
            batches = await reader.getmany(timeout_ms=500)
            found += [r for rs in batches.values() for r in rs if command_id.encode() in r.value]
    return found


async def handled(worker: Dispatcher, record: ConsumerRecord[bytes, bytes]) -> None:
    """What the worker's offer-answers agent does with a command it reads."""
    item = decode_answer(record.value)
    if isinstance(item, DispatcherCommand):
        await worker.on_command(item)
    elif isinstance(item, AlarmCommand):
        await worker.on_alarm_command(item)
    else:
        raise AssertionError(f"not a command: {record.value!r}")


async def outcome(
    api: httpx.AsyncClient, headers: dict[str, str], agency: str, command_id: str
) -> dict[str, Any]:
    read = await api.get(f"/v1/agencies/{agency}/commands/{command_id}", headers=headers)
    assert read.status_code == 200, read.text
    body: dict[str, Any] = read.json()
    return body


async def test_an_assign_goes_by_kafka_to_the_worker_and_its_outcome_reads_back(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World, worker: Dispatcher
) -> None:
    incident = await opened(db, world)
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    sent = await api.post(
        f"/v1/agencies/{world.agency}/incidents/{incident}/assign",
        json={"caregiver_id": world.cg(1)},
        headers=desk,
    )
    assert sent.status_code == 202, sent.text
    command_id = sent.json()["command_id"]
    assert sent.headers["Location"] == f"/v1/agencies/{world.agency}/commands/{command_id}"
    before = await outcome(api, desk, world.agency, command_id)
    assert (before["outcome"], before["command"], before["incident_id"]) == (
        "pending",
        "assign",
        incident,
    )

    [record] = await on_topic(settings, command_id)
    assert record.key == incident.encode()
    command = decode_answer(record.value)
    assert isinstance(command, DispatcherCommand)
    assert (command.command, command.incident_id, command.caregiver_id) == (
        "assign",
        incident,
        world.cg(1),
    )
    assert (command.agency_id, command.dispatcher_id) == (world.agency, "desk")
    await handled(worker, record)

    after = await outcome(api, desk, world.agency, command_id)
    assert (after["outcome"], after["reason"]) == ("done", None)
    read = (await api.get(f"/v1/agencies/{world.agency}/incidents/{incident}", headers=desk)).json()
    assert (read["state"], read["assignee_id"]) == ("assigned", world.cg(1))
    assigned = [s for s in read["timeline"] if s["kind"] == "incident_assigned"]
    assert [(s["actor"], s["detail"]["command_id"]) for s in assigned] == [
        ("dispatcher:desk", command_id)
    ]


async def test_the_workers_refusals_read_back_with_their_reasons(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World, worker: Dispatcher
) -> None:
    incident = await opened(db, world)
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    base = f"/v1/agencies/{world.agency}/incidents/{incident}"

    async def decided(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        sent = await api.post(f"{base}/{path}", json=body, headers=desk)
        assert sent.status_code == 202, sent.text
        [record] = await on_topic(settings, sent.json()["command_id"])
        await handled(worker, record)
        return await outcome(api, desk, world.agency, sent.json()["command_id"])

    stranger = await decided("assign", {"caregiver_id": "nobody-of-ours"})
    assert (stranger["outcome"], stranger["reason"]) == ("refused", "unknown_caregiver")
    resolved = await decided("resolve", {"note": "false alarm, she is fine"})
    assert (resolved["outcome"], resolved["command"]) == ("done", "resolve")
    again = await decided("resolve")
    assert (again["outcome"], again["reason"]) == ("refused", "already_resolved")
    late = await decided("assign", {"caregiver_id": world.cg(0)})
    assert (late["outcome"], late["reason"]) == ("refused", "not_waiting")


async def test_a_retry_with_the_same_key_is_one_command(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World, worker: Dispatcher
) -> None:
    incident = await opened(db, world)
    desk = {**bearer(settings, "dispatcher", "desk", world.agency), "Idempotency-Key": "retry-1"}
    path = f"/v1/agencies/{world.agency}/incidents/{incident}/assign"
    first = await api.post(path, json={"caregiver_id": world.cg(0)}, headers=desk)
    retry = await api.post(path, json={"caregiver_id": world.cg(0)}, headers=desk)
    assert first.status_code == retry.status_code == 202
    command_id = first.json()["command_id"]
    assert retry.json()["command_id"] == command_id

    other = await api.post(path, json={"caregiver_id": world.cg(1)}, headers=desk)
    assert (other.status_code, other.json()["reason"]) == (422, "idempotency_key_reused")

    for record in await on_topic(settings, command_id, count=2):
        await handled(worker, record)
    assert (await outcome(api, desk, world.agency, command_id))["outcome"] == "done"
    read = (await api.get(f"/v1/agencies/{world.agency}/incidents/{incident}", headers=desk)).json()
    assert read["assignee_id"] == world.cg(0)
    assert [s["kind"] for s in read["timeline"]].count("incident_assigned") == 1

    # the same key of another agency names another command
    theirs = await seed(db, caregivers=1)
    their_incident = await opened(db, theirs)
    their_desk = {
        **bearer(settings, "dispatcher", "d", theirs.agency),
        "Idempotency-Key": "retry-1",
    }
    their_path = f"/v1/agencies/{theirs.agency}/incidents/{their_incident}/assign"
    theirs_sent = await api.post(
        their_path, json={"caregiver_id": theirs.cg(0)}, headers=their_desk
    )
    assert theirs_sent.status_code == 202 and theirs_sent.json()["command_id"] != command_id


async def test_one_key_sent_at_once_for_two_commands_is_one_of_them(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World
) -> None:
    incident = await opened(db, world)
    desk = {**bearer(settings, "dispatcher", "desk", world.agency), "Idempotency-Key": "at-once"}
    path = f"/v1/agencies/{world.agency}/incidents/{incident}/assign"
    answers = await asyncio.gather(
        api.post(path, json={"caregiver_id": world.cg(0)}, headers=desk),
        api.post(path, json={"caregiver_id": world.cg(1)}, headers=desk),
    )
    assert sorted(a.status_code for a in answers) == [202, 422]
    [sent] = [a for a in answers if a.status_code == 202]
    [record] = await on_topic(settings, sent.json()["command_id"])
    command = decode_answer(record.value)
    assert isinstance(command, DispatcherCommand)
    which = answers.index(sent)
    assert command.caregiver_id == world.cg(which)


async def test_a_hand_on_an_alarm_goes_by_kafka_keyed_by_the_alarm(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World, worker: Dispatcher
) -> None:
    store = AlarmStore(db)
    alarm = await store.raise_alarm(
        world.agency,
        f"device:{world.device.id}",
        "device_offline",
        "major",
        time.time(),
        patient_id=world.patient.id,
    )
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    base = f"/v1/agencies/{world.agency}/alarms/{alarm.id}"

    async def decided(command: str) -> dict[str, Any]:
        sent = await api.post(f"{base}/{command}", headers=desk)
        assert sent.status_code == 202, sent.text
        [record] = await on_topic(settings, sent.json()["command_id"])
        assert record.key == alarm.id.encode()
        item = decode_answer(record.value)
        assert isinstance(item, AlarmCommand)
        assert (item.command, item.alarm_id, item.agency_id) == (command, alarm.id, world.agency)
        await handled(worker, record)
        return await outcome(api, desk, world.agency, sent.json()["command_id"])

    acknowledged = await decided("acknowledge")
    assert (acknowledged["outcome"], acknowledged["alarm_id"]) == ("done", alarm.id)
    read = (await api.get(base, headers=desk)).json()
    assert (read["status"], read["acknowledged_by"]) == ("active_ack", "dispatcher:desk")

    assert (await decided("open_incident"))["outcome"] == "done"
    incidents = await api.get(
        f"/v1/agencies/{world.agency}/incidents",
        params={"patient_id": world.patient.id},
        headers=desk,
    )
    assert [i["kind"] for i in incidents.json()["items"]] == ["device_offline"]

    assert (await decided("clear"))["outcome"] == "done"
    assert (await api.get(base, headers=desk)).json()["status"] == "cleared_ack"
    history = [h["kind"] for h in (await api.get(base, headers=desk)).json()["history"]]
    assert history[0] == "alarm_raised" and history[-1] == "alarm_cleared"


async def test_a_false_alarm_clears_it_and_an_alarm_of_no_one_opens_no_incident(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World, worker: Dispatcher
) -> None:
    store = AlarmStore(db)
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    base = f"/v1/agencies/{world.agency}/alarms"
    alarm = await store.raise_alarm(world.agency, "agency", "notify_failed", "warning", time.time())

    async def decided(command: str) -> dict[str, Any]:
        sent = await api.post(f"{base}/{alarm.id}/{command}", headers=desk)
        assert sent.status_code == 202, sent.text
        [record] = await on_topic(settings, sent.json()["command_id"])
        await handled(worker, record)
        return await outcome(api, desk, world.agency, sent.json()["command_id"])

    no_one = await decided("open_incident")
    assert (no_one["outcome"], no_one["reason"]) == ("refused", "no_patient")
    assert (await decided("false_alarm"))["outcome"] == "done"
    read = (await api.get(f"{base}/{alarm.id}", headers=desk)).json()
    assert (read["status"], read["cleared_by"]) == ("cleared_unack", "dispatcher:desk")


@pytest.mark.parametrize(
    ("who", "status", "reason"),
    [
        ("a caregiver", 403, "forbidden"),
        ("a family member", 403, "forbidden"),
        ("another agency's dispatcher", 403, "other_agency"),
        ("nobody", 401, "unauthorised"),
    ],
)
async def test_who_may_not_command_is_refused_with_a_reason_and_nothing_is_sent(
    api: httpx.AsyncClient,
    settings: Settings,
    db: Database,
    world: World,
    who: str,
    status: int,
    reason: str,
) -> None:
    incident = await opened(db, world)
    alarm = await AlarmStore(db).raise_alarm(world.agency, "agency", "k", "minor", time.time())
    headers = {
        "a caregiver": bearer(settings, "caregiver", world.cg(0), world.agency),
        "a family member": bearer(settings, "family", "f", world.agency),
        "another agency's dispatcher": bearer(settings, "dispatcher", "d", "elsewhere"),
        "nobody": {},
    }[who]
    base = f"/v1/agencies/{world.agency}"
    for path, body in (
        (f"{base}/incidents/{incident}/assign", {"caregiver_id": world.cg(0)}),
        (f"{base}/incidents/{incident}/resolve", {}),
        (f"{base}/alarms/{alarm.id}/clear", None),
    ):
        refused = await api.post(path, json=body, headers=headers)
        assert (refused.status_code, refused.json()["reason"]) == (status, reason)
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    read = (await api.get(f"{base}/incidents/{incident}", headers=desk)).json()
    assert read["state"] == "open"
    assert (await api.get(f"{base}/alarms/{alarm.id}", headers=desk)).json()[
        "status"
    ] == "active_unack"


async def test_unknown_incidents_alarms_and_commands_are_404(
    api: httpx.AsyncClient, settings: Settings, db: Database, world: World
) -> None:
    theirs = await seed(db, caregivers=1)
    their_incident = await opened(db, theirs)
    their_alarm = await AlarmStore(db).raise_alarm(
        theirs.agency, "agency", "k", "minor", time.time()
    )
    their_command = await api.post(
        f"/v1/agencies/{theirs.agency}/incidents/{their_incident}/resolve",
        headers=bearer(settings, "dispatcher", "d", theirs.agency),
    )
    assert their_command.status_code == 202
    desk = bearer(settings, "dispatcher", "desk", world.agency)
    base = f"/v1/agencies/{world.agency}"
    for incident in (str(uuid.uuid4()), "not-a-uuid", their_incident):
        missing = await api.post(f"{base}/incidents/{incident}/resolve", headers=desk)
        assert (missing.status_code, missing.json()["reason"]) == (404, "unknown_incident")
    for alarm in (str(uuid.uuid4()), their_alarm.id):
        missing = await api.post(f"{base}/alarms/{alarm}/acknowledge", headers=desk)
        assert (missing.status_code, missing.json()["reason"]) == (404, "unknown_alarm")
    for command in (uuid.uuid4().hex, their_command.json()["command_id"]):
        missing = await api.get(f"{base}/commands/{command}", headers=desk)
        assert (missing.status_code, missing.json()["reason"]) == (404, "unknown_command")


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("incidents/{incident}/assign", {}, {}),
        ("incidents/{incident}/assign", {"caregiver_id": "bad id!"}, {}),
        ("incidents/{incident}/assign", [], {}),
        ("incidents/{incident}/resolve", {"note": "n" * 501}, {}),
        ("incidents/{incident}/resolve", None, {"Idempotency-Key": "has a space"}),
        ("incidents/{incident}/resolve", None, {"Idempotency-Key": "k" * 129}),
        ("alarms/{alarm}/forget", None, {}),
        ("incidents/bad id!/resolve", None, {}),
    ],
)
async def test_bad_input_is_a_400_that_says_where(
    api: httpx.AsyncClient,
    settings: Settings,
    db: Database,
    world: World,
    path: str,
    body: Any,
    headers: dict[str, str],
) -> None:
    incident = await opened(db, world)
    alarm = await AlarmStore(db).raise_alarm(world.agency, "agency", "k", "minor", time.time())
    url = f"/v1/agencies/{world.agency}/" + path.format(incident=incident, alarm=alarm.id)
    desk = {**bearer(settings, "dispatcher", "desk", world.agency), **headers}
    refused = await api.post(url, json=body, headers=desk)
    assert refused.status_code == 400, refused.text
    assert refused.json()["reason"] == "malformed" and refused.json()["detail"][0]["at"]
    assert "n" * 501 not in refused.text and "k" * 129 not in refused.text
