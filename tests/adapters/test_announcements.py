"""What a committed dispatch step announces reaches everyone once, whatever fails between the
commit and the telling; a dispatcher's command gets its outcome; a new trigger is announced.

Against the real Postgres and Redis. Redis "away" is a worker whose Redis client points at a
port where nothing listens, while its Postgres is the real one: the step commits, the telling
fails, as when Redis is lost between the two.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest

from adapters.metrics import CommandMetrics
from adapters.storage import outbox
from adapters.storage.announcements import Announcement, keep
from adapters.storage.connection import RedisConnection
from adapters.storage.incidents import IncidentStore
from adapters.storage.live import LiveIndex
from adapters.storage.postgres import Database, ts
from kernel import recipients
from kernel.contracts import DispatcherCommand, OfferAnswer
from kernel.errors import StorageError
from kernel.settings import Settings
from streams.dispatcher import Dispatcher
from streams.notices import TOLD_LATE_AFTER_S
from tests.adapters.scenes import Scene, SceneMaker, fix, north
from tests.support import free_port

pytestmark = pytest.mark.servers


def cut_off(s: Scene, settings: Settings, db: Database, **changes: Any) -> Dispatcher:
    """A worker on the real Postgres whose Redis is away."""
    away = RedisConnection.open(f"redis://127.0.0.1:{free_port()}")
    return Dispatcher(settings.model_copy(update=changes), db, away, clock=s.clock)


async def accept(s: Scene, dispatcher: Dispatcher, i: int, answer_id: str = "a-1") -> None:
    offer = (await s.to_cg(i, "offer"))[-1]
    await dispatcher.on_answer(
        OfferAnswer(
            answer_id=answer_id,
            offer_id=offer["offer_id"],
            incident_id=offer["incident"]["incident_id"],
            caregiver_id=s.w.cg(i),
            agency_id=s.w.agency,
            answer="accept",
            at=s.clock.now,
        )
    )


async def results(s: Scene, i: int) -> list[str]:
    return [f["outcome"] for f in await s.to_cg(i, "offer_result")]


async def states(s: Scene, recipient: str) -> list[str]:
    return [f["state"] for f in await s.incident_frames(recipient)]


async def status_of(redis: aioredis.Redis, settings: Settings, caregiver_id: str) -> str:
    status = await redis.hget(settings.keys.caregiver(caregiver_id), "status")
    return status.decode() if isinstance(status, bytes) else str(status or "")


@pytest.mark.parametrize("then", ["timer", "replay"])
async def test_an_acceptance_committed_while_redis_was_away_is_told_once_when_it_is_back(
    make_scene: SceneMaker,
    db: Database,
    redis: aioredis.Redis,
    settings: Settings,
    then: Literal["timer", "replay"],
) -> None:
    s = await make_scene([100, 200], offer_window_by_severity={1: 3600.0}, offer_wave_size=2)
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    with pytest.raises(StorageError):
        await accept(s, cut_off(s, settings, db, offer_window_by_severity={1: 3600.0}), 0)
    row = await IncidentStore(db).get(incident.id)
    assert row is not None
    assert (row.state, row.assignee_id) == ("assigned", s.w.cg(0))  # committed, untold
    assert await results(s, 0) == []
    if then == "timer":  # the worker died: the offer timer of another tells it
        s.clock.now += TOLD_LATE_AFTER_S
        await s.dispatcher.tick()
    else:  # Kafka gives the answer again: the step finds it taken, and tells what was kept
        await accept(s, s.dispatcher, 0)
    for _again in range(2):
        assert await results(s, 0) == ["assigned"]
        assert await results(s, 1) == ["taken"]
        for recipient in (
            recipients.family_of(s.w.agency, s.w.patient.id),
            recipients.dispatchers(s.w.agency),
        ):
            assert await states(s, recipient) == ["offered", "assigned"]
        assert await status_of(redis, settings, s.w.cg(0)) == "busy"
        s.clock.now += TOLD_LATE_AFTER_S
        await s.dispatcher.tick()  # told once: nothing is left to tell
    assert (
        await db.pool.fetchval(
            "SELECT count(*) FROM announcements WHERE subject_id = $1", uuid.UUID(incident.id)
        )
        == 0
    )


async def test_an_announcement_is_told_once_however_often_it_is_delivered(
    redis: aioredis.Redis, settings: Settings
) -> None:
    box = outbox.Outbox(redis, settings)
    desk = recipients.dispatchers(f"ag-{uuid.uuid4().hex[:8]}")
    frames = [(desk, b'{"type":"incident","n":1}'), (desk, b'{"type":"incident","n":2}')]
    assert await box.announce("a-once", frames) is True
    assert await box.announce("a-once", frames) is False
    kept = [m for m in await box.since(desk, 0)]
    assert [m.split(b',"epoch":')[0] for m in kept] == [b'{"seq":1', b'{"seq":2']
    assert await box.announce("a-other", frames[:1]) is True
    assert (await box.position(desk)).seq == 3


async def test_a_subject_whose_announcements_cannot_be_told_holds_up_no_other(
    db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    now = time.time()
    broken, fine = str(uuid.uuid4()), str(uuid.uuid4())
    desk = recipients.dispatchers(f"ag-{uuid.uuid4().hex[:8]}")
    frame = (desk, b'{"type":"incident","n":1}')
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO announcements(id, subject_id, made_at, body) VALUES ($1, $2, $3, '{}')",
            uuid.uuid4(),
            uuid.UUID(broken),
            ts(now - 10),
        )
        await keep(conn, fine, Announcement([frame]), now - 5)
    told = await RedisConnection(redis).announcements(db, settings).deliver_due(now, now)
    assert (told.announcements, told.frames) >= (1, 1)
    assert len(await outbox.Outbox(redis, settings).since(desk, 0)) == 1
    left = await db.pool.fetch(
        "SELECT subject_id FROM announcements WHERE subject_id = ANY($1::uuid[])",
        [uuid.UUID(broken), uuid.UUID(fine)],
    )
    assert [str(r["subject_id"]) for r in left] == [broken]
    await db.pool.execute("DELETE FROM announcements WHERE subject_id = $1", uuid.UUID(broken))


# ---------------------------------------------------------------- dispatchers' commands


def command(
    s: Scene, kind: Literal["assign", "resolve"], incident_id: str, **more: Any
) -> DispatcherCommand:
    fields: dict[str, Any] = {"agency_id": s.w.agency, "dispatcher_id": "desk-1", **more}
    return DispatcherCommand(
        command_id=uuid.uuid4().hex, command=kind, incident_id=incident_id, at=s.clock.now, **fields
    )


async def command_results(s: Scene, agency: str | None = None) -> list[dict[str, Any]]:
    frames = await s.to(recipients.dispatchers(agency or s.w.agency))
    return [f for f in frames if f["type"] == "command_result"]


async def test_every_command_gets_its_outcome_once_the_worker_decided(
    make_scene: SceneMaker,
) -> None:
    s = await make_scene([100, 200], offer_window_by_severity={1: 3600.0})
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    elsewhere = f"elsewhere-{uuid.uuid4().hex[:8]}"
    sent = [
        command(s, "assign", incident.id, caregiver_id=s.w.cg(1), agency_id=elsewhere),
        command(s, "assign", incident.id, caregiver_id="nobody"),
        command(s, "resolve", "not-an-incident-id"),
        command(s, "resolve", str(uuid.uuid4())),
        command(s, "assign", incident.id, caregiver_id=s.w.cg(1)),
        command(s, "assign", incident.id, caregiver_id=s.w.cg(0)),
        command(s, "resolve", incident.id),
        command(s, "resolve", incident.id),
    ]
    for c in sent:
        await s.dispatcher.on_command(c)
    told = await command_results(s)
    assert [(f["command_id"], f["outcome"], f["reason"]) for f in told] == [
        (sent[1].command_id, "refused", "unknown_caregiver"),
        (sent[2].command_id, "refused", "unknown_incident"),
        (sent[3].command_id, "refused", "unknown_incident"),
        (sent[4].command_id, "done", None),
        (sent[5].command_id, "refused", "not_waiting"),
        (sent[6].command_id, "done", None),
        (sent[7].command_id, "refused", "already_resolved"),
    ]
    assert {f["dispatcher_id"] for f in told} == {"desk-1"}
    # the stranger's agency is told its refusal; this agency's dispatchers are not
    (stranger,) = await command_results(s, elsewhere)
    assert (stranger["command_id"], stranger["reason"]) == (sent[0].command_id, "other_agency")
    assert s.dispatcher.refused["unknown_incident"] == 2
    registry = CollectorRegistry()
    CommandMetrics(s.dispatcher.refused, registry)
    scraped = generate_latest(registry).decode()
    assert 'careknot_dispatch_commands_refused_total{reason="unknown_incident"} 2.0' in scraped


@pytest.mark.parametrize("kind", ["resolve", "assign"])
async def test_a_command_handled_again_after_its_telling_failed_is_told_done_once(
    make_scene: SceneMaker, db: Database, settings: Settings, kind: Literal["assign", "resolve"]
) -> None:
    s = await make_scene([100, 200], offer_window_by_severity={1: 3600.0})
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    again = command(s, kind, incident.id, caregiver_id=s.w.cg(1) if kind == "assign" else None)
    with pytest.raises(StorageError):  # committed; Redis away for the telling
        await cut_off(s, settings, db, offer_window_by_severity={1: 3600.0}).on_command(again)
    for _replay in range(2):
        assert (await s.dispatcher.on_command(again)).done
    told = await command_results(s)
    assert [(f["command_id"], f["outcome"]) for f in told] == [(again.command_id, "done")]
    states = [f["state"] for f in await s.incident_frames(recipients.dispatchers(s.w.agency))]
    assert states == ["offered", "assigned" if kind == "assign" else "resolved"]


# ---------------------------------------------------------------- a new trigger from the home


async def test_a_new_trigger_is_announced_and_restarts_the_offers_of_an_escalated_incident(
    make_scene: SceneMaker, live: LiveIndex
) -> None:
    # the second caregiver's phone has been silent for an hour: no candidate
    s = await make_scene([100, 200], ages_s={1: 3600.0}, offer_window_by_severity={1: 3600.0})
    incident = await s.dispatcher.on_device_event(s.event(1))
    assert incident is not None
    s.clock.now += 5
    await s.answer(0, "decline")  # no one left to ask: escalated
    desk, family = (
        recipients.dispatchers(s.w.agency),
        recipients.family_of(s.w.agency, s.w.patient.id),
    )
    assert await states(s, desk) == ["offered", "escalated"]
    await live.update([fix(s.w.cg(1), s.w.agency, north(200), s.clock.now)])  # she is back
    s.clock.now += 5
    joined = await s.dispatcher.on_device_event(s.event(2, kind="sos"))
    assert joined is not None
    assert joined.id == incident.id
    for recipient in (desk, family):
        frames = await s.incident_frames(recipient)
        assert [(f["state"], f.get("trigger")) for f in frames[1:]] == [
            ("escalated", None),
            ("escalated", "sos"),
            ("escalated", None),  # its next wave
        ]
    assert await s.offered() == [1, 1]
