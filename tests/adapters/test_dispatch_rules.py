"""Dispatch rules against the real Postgres and Redis: who is never offered, incidents joined,
escalation in time, manual assignment, resolution, the audit timeline and a restart.

Fixtures come from conftest.py and the small world from ``tests.adapters.scenes`` (same
servers, a namespace of this module's own).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import pytest
import redis.asyncio as aioredis

from adapters.storage.alarms import AlarmStore
from adapters.storage.connection import RedisConnection
from adapters.storage.incidents import IncidentStore, Trigger
from adapters.storage.live import AVAILABLE, BUSY, LiveIndex
from adapters.storage.postgres import Database
from adapters.storage.roster import Roster
from careknot.timeline import render, show
from dispatch.eligibility import AgencyRules
from dispatch.offers import ESCALATE_AFTER_S, JOIN_WINDOW_S
from dispatch.worktime import HOUR_S
from kernel import recipients
from kernel.contracts import AlarmCommand, DispatcherCommand, Role
from kernel.errors import RejectedInput
from kernel.settings import Settings
from kernel.tokens import Claims
from streams.dispatcher import Dispatcher
from tests.adapters import gateway_clients as gw
from tests.adapters import scenes
from tests.adapters.scenes import SceneMaker, alarms_told, event_kinds, seed
from tests.support import Inbox
from ws_gateway.server import Gateway
from ws_gateway.session import Assign, Resolve, decide_command, parse_frame

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


# ---------------------------------------------------------------- joining repeated triggers


async def test_repeated_triggers_from_one_home_join_the_waiting_incident(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([100, 200], offer_window_by_severity={1: 3600})
    first = await s.dispatcher.on_device_event(s.event(1))
    assert first is not None
    s.clock.now += 60
    joined = await s.dispatcher.on_device_event(s.event(2, kind="sos"))
    assert joined is not None
    assert joined.id == first.id
    assert await s.dispatcher.on_device_event(s.event(2, kind="sos")) is None  # a replay
    assert await s.offered() == [1, 0]
    assert await event_kinds(db, first.id) == ["incident_opened", "offer_sent", "trigger_joined"]
    # the window runs from the latest trigger: 9 minutes after it still joins
    s.clock.now += 540
    again = await s.dispatcher.on_device_event(s.event(3))
    assert again is not None
    assert again.id == first.id
    s.clock.now += JOIN_WINDOW_S + 1
    later = await s.dispatcher.on_device_event(s.event(4))
    assert later is not None
    assert later.id != first.id
    count = await db.pool.fetchval(
        "SELECT count(*) FROM incidents WHERE patient_id = $1", s.w.patient.id
    )
    assert count == 2


async def test_a_trigger_after_assignment_opens_a_new_incident(make_scene: SceneMaker) -> None:
    s = await make_scene([100, 200])
    first = await s.dispatcher.on_device_event(s.event(1))
    s.clock.now += 5
    await s.answer(0, "accept")
    s.clock.now += 5
    second = await s.dispatcher.on_device_event(s.event(2))
    assert first is not None
    assert second is not None
    assert second.id != first.id
    assert await s.offered() == [1, 1]  # she is busy now: the next nearest is asked


async def test_concurrent_triggers_from_one_home_open_one_incident(
    make_scene: SceneMaker, db: Database, db2: Database
) -> None:
    s = await make_scene([100])
    store, store2 = IncidentStore(db), IncidentStore(db2)
    for round_ in range(5):
        triggers = [
            Trigger(
                f"{s.w.device.id}:{round_}:{i}",
                s.w.agency,
                s.w.patient.id,
                s.w.device.id,
                "fall",
                1,
                s.clock.now,
            )
            for i in range(2)
        ]
        results = await scenes.all_done(
            store.open_or_join(triggers[0], JOIN_WINDOW_S),
            store2.open_or_join(triggers[1], JOIN_WINDOW_S),
        )
        expected = [False, True] if round_ == 0 else [True, True]
        assert sorted(r.joined for r in results) == expected
        assert len({r.incident.id for r in results}) == 1


# ---------------------------------------------------------------- escalation in time, told outside


def about(incident_id: str) -> Callable[[dict[str, Any]], bool]:
    """A notification about the incident's alarm (the timer climbs every ladder of the
    namespace, so other tests' leftovers may be told at the same URLs)."""
    return lambda body: f"incident:{incident_id}" in body["message"]


async def test_unaccepted_incident_escalates_in_time_and_the_external_rung_hears(
    make_scene: SceneMaker, db: Database
) -> None:
    async with Inbox() as inbox:
        s = await make_scene(
            [100, 200],
            offer_window_by_severity={1: 3600},
            alarm_notify_url=f"{inbox.url('ops')}, {inbox.url('audit')}",  # two, as Apprise reads
        )
        incident = await s.dispatcher.on_device_event(s.event())
        assert incident is not None
        s.clock.now += ESCALATE_AFTER_S - 1
        await s.dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)
        assert (await state_of(db, incident.id)) == "offered"
        s.clock.now += 1
        await s.dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)
        assert (await state_of(db, incident.id)) == "escalated"
        frames = await s.incident_frames(recipients.dispatchers(s.w.agency))
        assert frames[-1]["state"] == "escalated"
        s.clock.now += 21  # the on-call rung: not the system's
        await s.dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)
        assert not [b for b in inbox.to("ops") + inbox.to("audit") if about(incident.id)(b)]
        s.clock.now += 20  # the external rung, 41 s after the escalation
        await s.dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)
        for path in ("ops", "audit"):
            told = await inbox.expect(path, about(incident.id))
            assert "critical" in told["title"]
            assert "incident_escalated" in told["title"]
            assert s.w.agency in told["message"]
            assert len([b for b in inbox.to(path) if about(incident.id)(b)]) == 1
        # the caregiver already asked may still take it
        s.clock.now += 5
        await s.answer(0, "accept")
        assert (await state_of(db, incident.id)) == "assigned"
        assert await s.offered() == [1, 0]


async def test_a_failed_notification_is_counted_and_stops_neither_the_ladder_nor_the_dispatch(
    make_scene: SceneMaker, db: Database
) -> None:
    async with Inbox(failing=["pager", "down"]) as inbox:
        s = await make_scene(
            [100, 200],
            offer_window_by_severity={1: 3600},
            alarm_notify_url=f"{inbox.url('down')} {inbox.url('ops')}",
        )
        await AlarmStore(db).add_contact(s.w.agency, "on_call", inbox.url("pager"))
        incident = await s.dispatcher.on_device_event(s.event())
        assert incident is not None
        s.clock.now += ESCALATE_AFTER_S
        await s.dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)
        assert (await state_of(db, incident.id)) == "escalated"
        assert s.dispatcher.alarms.notifications_failed == 0
        s.clock.now += 21
        await s.dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)
        await inbox.expect("pager", about(incident.id))  # asked, and it answered 500
        assert s.dispatcher.alarms.notifications_failed >= 1
        s.clock.now += 20
        await s.dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)
        await inbox.expect("down", about(incident.id))  # 500 again
        await inbox.expect("ops", about(incident.id))  # the ladder went on, and the other heard
        # each notification a failing endpoint refused is counted once
        refused = len(inbox.to("pager")) + len(inbox.to("down"))
        assert s.dispatcher.alarms.notifications_failed == refused
        told = [f for f in await alarms_told(s) if f["source"] == f"incident:{incident.id}"]
        assert (told[-1]["status"], told[-1]["climbed"]) == ("active_unack", 3)
        # and the dispatch goes on: the caregiver asked takes it, its alarm clears
        s.clock.now += 5
        await s.answer(0, "accept")
        assert (await state_of(db, incident.id)) == "assigned"
        told = [f for f in await alarms_told(s) if f["source"] == f"incident:{incident.id}"]
        assert (told[-1]["status"], told[-1]["climbed"]) == ("cleared_unack", 3)


async def test_after_a_timed_escalation_the_waves_go_on(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([100, 200, 300], offer_window_by_severity={1: 45})  # outlives the 40 s
    opened = s.clock.now
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    s.clock.now += ESCALATE_AFTER_S
    await s.dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)
    assert (await state_of(db, incident.id)) == "escalated"
    s.clock.now = opened + 45 + 1
    await s.dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)
    # the next wave, twice the size, while a person also knows
    assert await s.offered() == [1, 1, 1]
    assert (await state_of(db, incident.id)) == "escalated"
    frames = await s.incident_frames(recipients.dispatchers(s.w.agency))
    assert [f["state"] for f in frames] == ["offered", "escalated", "escalated"]
    s.clock.now += 2
    await s.answer(1, "decline")
    await s.answer(2, "accept")
    assert (await state_of(db, incident.id)) == "assigned"
    kinds = await event_kinds(db, incident.id)
    assert kinds.count("incident_escalated") == 1


async def state_of(db: Database, incident_id: str) -> str:
    row = await IncidentStore(db).get(incident_id)
    assert row is not None
    return row.state


# ---------------------------------------------------------------- dispatchers' commands


def command(
    s: scenes.Scene, kind: Literal["assign", "resolve"], incident_id: str, **more: Any
) -> DispatcherCommand:
    fields: dict[str, Any] = {"agency_id": s.w.agency, "dispatcher_id": "desk", **more}
    return DispatcherCommand(
        command_id=uuid.uuid4().hex,
        command=kind,
        incident_id=incident_id,
        at=s.clock.now,
        **fields,
    )


async def test_a_dispatcher_assigns_by_hand(
    make_scene: SceneMaker, db: Database, live: LiveIndex
) -> None:
    s = await make_scene([100, 200, 300], offer_window_by_severity={1: 3600})
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    stranger = command(s, "assign", incident.id, caregiver_id=s.w.cg(2), agency_id="elsewhere")
    assert (await s.dispatcher.on_command(stranger)).outcome == "other_agency"
    nobody = command(s, "assign", incident.id, caregiver_id="nobody")
    assert (await s.dispatcher.on_command(nobody)).outcome == "unknown_caregiver"

    s.clock.now += 2
    done = await s.dispatcher.on_manual_assign(
        command(s, "assign", incident.id, caregiver_id=s.w.cg(2))
    )
    assert done.outcome == "assigned"
    assert (await state_of(db, incident.id)) == "assigned"
    assert [f["outcome"] for f in await s.to_cg(0, "offer_result")] == ["taken"]
    (told,) = await s.to_cg(2, "incident")
    assert (told["state"], told["assignee_id"]) == ("assigned", s.w.cg(2))
    assert [c.status for c in await live.candidates([s.w.cg(2)])] == [BUSY]
    (assigned,) = [
        e for e in await db.incident_events(incident.id) if e.kind == "incident_assigned"
    ]
    assert (assigned.actor, assigned.payload["manual"]) == ("dispatcher:desk", True)
    again = command(s, "assign", incident.id, caregiver_id=s.w.cg(1))
    assert (await s.dispatcher.on_command(again)).outcome == "not_waiting"
    s.clock.now += 1
    await s.answer(0, "accept")  # her offer was taken
    assert (await state_of(db, incident.id)) == "assigned"


async def test_resolving_cancels_pending_offers_and_frees_the_assignee(
    make_scene: SceneMaker, db: Database, live: LiveIndex
) -> None:
    s = await make_scene([100, 200], offer_window_by_severity={1: 3600}, offer_wave_size=2)
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    s.clock.now += 3
    done = await s.dispatcher.on_command(command(s, "resolve", incident.id, note="false alarm"))
    assert done.outcome == "resolved"
    for i in range(2):
        assert [f["outcome"] for f in await s.to_cg(i, "offer_result")] == ["cancelled"]
    frames = await s.incident_frames(recipients.family_of(s.w.agency, s.w.patient.id))
    assert frames[-1]["state"] == "resolved"
    assert (await s.dispatcher.on_command(command(s, "resolve", incident.id))).outcome == (
        "already_resolved"
    )
    kinds = await event_kinds(db, incident.id)
    assert kinds[-3:] == ["incident_resolved", "offer_cancelled", "offer_cancelled"]
    # an assigned incident resolved: she is free again
    second = await s.dispatcher.on_device_event(s.event(2))
    assert second is not None
    await s.answer(0, "accept")
    assert [c.status for c in await live.candidates([s.w.cg(0)])] == [BUSY]
    await s.dispatcher.on_command(command(s, "resolve", second.id))
    assert [c.status for c in await live.candidates([s.w.cg(0)])] == [AVAILABLE]


# ---------------------------------------------------------------- no incident left unanswered

TERMINAL = {"assigned", "escalated", "resolved"}


@pytest.mark.parametrize("seed_", range(12))
async def test_every_incident_ends_assigned_escalated_or_resolved(
    make_scene: SceneMaker, db: Database, seed_: int
) -> None:
    """Random answers, silences, resolutions and clock steps; within the escalation time
    (plus one timer tick) the incident is in a terminal state, with at most one winner."""
    rng = random.Random(seed_)
    s = await make_scene(
        [100 * (i + 1) for i in range(rng.randint(0, 4))],
        offer_window_by_severity={1: rng.choice([5.0, 15.0, 20.0, 45.0])},
        offer_wave_size=rng.randint(1, 3),
        max_waves=rng.randint(1, 4),
    )
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    opened = s.clock.now
    while s.clock.now <= opened + ESCALATE_AFTER_S + 1:
        await random_step(s, rng, incident.id)
        s.clock.now += rng.uniform(0.5, 8.0)
        await s.dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)
    assert (await state_of(db, incident.id)) in TERMINAL
    states = await scenes.offer_states(db, incident.id)
    assert list(states.values()).count("accepted") <= 1
    assert "pending" not in states.values() or (await state_of(db, incident.id)) == "escalated"


async def random_step(s: scenes.Scene, rng: random.Random, incident_id: str) -> None:
    roll = rng.random()
    if roll < 0.03:
        await s.dispatcher.on_command(command(s, "resolve", incident_id))
        return
    for i in range(len(s.w.caregivers)):
        offers = await s.to_cg(i, "offer")
        if offers and rng.random() < 0.4:
            await s.answer(i, rng.choice(["accept", "decline"]))


# ---------------------------------------------------------------- a worker restarted mid-dispatch


async def test_a_restarted_worker_resumes_the_timers_and_offers_no_one_twice(
    make_scene: SceneMaker, db: Database, settings: Settings, redis: aioredis.Redis
) -> None:
    s = await make_scene([100, 200, 300], offer_window_by_severity={1: 30})
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    assert await s.offered() == [1, 0, 0]
    s.clock.now += 10  # the worker dies here, its offer pending
    async with Database(settings) as pool:
        restarted = Dispatcher(
            settings.model_copy(update={"offer_window_by_severity": {1: 30}}),
            pool,
            RedisConnection(redis),
            clock=s.clock,
        )
        await restarted.resume()
        assert await s.offered() == [1, 0, 0]  # her offer still stands: nobody else asked
        s.clock.now += 21
        await restarted.tick(escalate_after_s=ESCALATE_AFTER_S)
        assert await s.offered() == [1, 1, 0]
        await restarted.resume()
        await restarted.tick(escalate_after_s=ESCALATE_AFTER_S)
        assert await s.offered() == [1, 1, 0]
        s.clock.now += 10  # 41 s since it opened, nobody accepted
        await restarted.tick(escalate_after_s=ESCALATE_AFTER_S)
        assert (await state_of(db, incident.id)) == "escalated"
    rows = await db.pool.fetch(
        "SELECT caregiver_id, count(*) AS n FROM offers WHERE incident_id = $1 GROUP BY 1",
        uuid.UUID(incident.id),
    )
    assert {r["caregiver_id"]: r["n"] for r in rows} == {s.w.cg(0): 1, s.w.cg(1): 1}


# ---------------------------------------------------------------- the audit timeline


async def test_the_timeline_tells_the_whole_story(
    make_scene: SceneMaker, db: Database, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    s = await make_scene([100, 200])
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    s.clock.now += 4
    await s.answer(0, "decline")
    s.clock.now += 6
    await s.answer(1, "accept")
    await s.dispatcher.on_command(command(s, "resolve", incident.id))

    lines = render(await db.incident_events(incident.id))
    kinds = [line.split()[3] for line in lines]
    assert kinds == [
        "incident_opened",
        "offer_sent",
        "offer_declined",
        "offer_sent",
        "offer_accepted",
        "incident_assigned",
        "incident_resolved",
    ]
    assert lines[0].split()[2] == "+0.0s"
    assert f"device:{s.w.device.id}" in lines[0]
    assert f"caregiver_id={s.w.cg(1)}" in lines[3]
    assert lines[4].split()[2] == "+10.0s"
    assert f"caregiver:{s.w.cg(1)}" in lines[4]
    assert "dispatcher:desk" in lines[6]

    assert await show(settings, incident.id) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"incident {incident.id} ({s.w.agency}): 7 events"
    assert out[1:] == lines
    assert await show(settings, str(uuid.uuid4())) == 1
    assert await show(settings, "not-an-id") == 1

    env = {
        **os.environ,
        "CAREKNOT_NAMESPACE": settings.namespace,
        "CAREKNOT_POSTGRES_DSN": settings.postgres_dsn,
    }
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "careknot.cli",
        "incident",
        "timeline",
        incident.id,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    printed, _ = await cli.communicate()
    assert cli.returncode == 0
    assert printed.decode().splitlines()[1:] == lines


# ---------------------------------------------------------------- the gateway's dispatcher frames


def claims(role: Role, sub: str = "desk", agency: str = "ag") -> Claims:
    return Claims(role=role, sub=sub, agency=agency, exp=time.time() + 60, patients=[])


def test_assign_and_resolve_frames_become_commands_of_the_dispatchers_agency() -> None:
    frame = parse_frame(b'{"type": "assign", "incident_id": "i-1", "caregiver_id": "cg-2"}')
    assert isinstance(frame, Assign)
    cmd = decide_command(claims("dispatcher"), frame, command_id="c1", now=5.0)
    assert (cmd.command, cmd.incident_id, cmd.caregiver_id) == ("assign", "i-1", "cg-2")
    assert (cmd.agency_id, cmd.actor, cmd.at) == ("ag", "dispatcher:desk", 5.0)
    resolve = parse_frame('{"type": "resolve", "incident_id": "i-1", "note": "false alarm"}')
    assert isinstance(resolve, Resolve)
    done = decide_command(claims("dispatcher"), resolve, command_id="c2", now=6.0)
    assert (done.command, done.caregiver_id, done.note) == ("resolve", None, "false alarm")
    assert DispatcherCommand.model_validate_json(done.model_dump_json()) == done


@pytest.mark.parametrize("role", ["caregiver", "family"])
def test_only_dispatchers_may_assign_or_resolve(role: Role) -> None:
    frame = parse_frame(b'{"type": "assign", "incident_id": "i-1", "caregiver_id": "cg-2"}')
    assert isinstance(frame, Assign)
    with pytest.raises(RejectedInput) as refused:
        decide_command(claims(role), frame, command_id="c1", now=5.0)
    assert refused.value.reason == "forbidden"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type": "assign", "incident_id": "i-1"}',
        b'{"type": "assign", "caregiver_id": "cg"}',
        b'{"type": "assign", "incident_id": "", "caregiver_id": "cg"}',
        b'{"type": "resolve"}',
    ],
)
def test_malformed_dispatcher_frames_are_refused(raw: bytes) -> None:
    with pytest.raises(RejectedInput) as refused:
        parse_frame(raw)
    assert refused.value.reason == "malformed"


@pytest.fixture(scope="module")
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    async with Gateway(settings.model_copy(update={"gateway_port": 0})) as gw:
        yield gw


async def test_a_dispatchers_assign_reaches_kafka_keyed_by_incident(
    gateway: Gateway, settings: Settings
) -> None:
    incident_id = str(uuid.uuid4())
    frame = {"type": "assign", "incident_id": incident_id, "caregiver_id": "cg-9"}
    async with gw.client(gateway, token=gw.token(settings, "caregiver", "cg-1")) as ws:
        await gw.recv(ws)
        await gw.send(ws, frame)
        assert (await gw.recv(ws))["reason"] == "forbidden"
    async with gw.client(gateway, token=gw.token(settings, "dispatcher", "desk-1")) as ws:
        await gw.recv(ws)
        await gw.send(ws, frame)
        ack = await gw.recv(ws)
        assert ack == {"type": "ack", "command": "assign", "incident_id": incident_id} | {
            "command_id": ack.get("command_id")
        }
    value = await gw.consume(settings, "offer-answers", lambda v: v["incident_id"] == incident_id)
    assert value.pop("_key") == incident_id.encode()
    cmd = DispatcherCommand.model_validate(value)
    assert cmd.command_id == ack["command_id"]  # the command_result will name it
    assert (cmd.command, cmd.caregiver_id, cmd.agency_id, cmd.actor) == (
        "assign",
        "cg-9",
        "a1",
        "dispatcher:desk-1",
    )


async def test_a_dispatchers_acknowledge_of_an_alarm_reaches_kafka_keyed_by_alarm(
    gateway: Gateway, settings: Settings
) -> None:
    alarm_id = str(uuid.uuid4())
    frame = {"type": "acknowledge", "alarm_id": alarm_id}
    async with gw.client(gateway, token=gw.token(settings, "family", "f-1", patients=["p"])) as ws:
        await gw.recv(ws)
        await gw.send(ws, frame)
        assert (await gw.recv(ws))["reason"] == "forbidden"
    async with gw.client(gateway, token=gw.token(settings, "dispatcher", "desk-2")) as ws:
        await gw.recv(ws)
        await gw.send(ws, frame)
        ack = await gw.recv(ws)
        assert (ack["type"], ack["command"], ack["alarm_id"]) == ("ack", "acknowledge", alarm_id)
    value = await gw.consume(settings, "offer-answers", lambda v: v.get("alarm_id") == alarm_id)
    assert value.pop("_key") == alarm_id.encode()
    cmd = AlarmCommand.model_validate(value)
    assert (cmd.command_id, cmd.command, cmd.agency_id, cmd.actor) == (
        ack["command_id"],
        "acknowledge",
        "a1",
        "dispatcher:desk-2",
    )


# ---------------------------------------------------------------- incidents opened from alarms


def alarm_hand(
    s: scenes.Scene, kind: str, alarm_id: str, dispatcher: str = "desk", **more: Any
) -> AlarmCommand:
    fields: dict[str, Any] = {"agency_id": s.w.agency, **more}
    return AlarmCommand(
        command_id=uuid.uuid4().hex,
        command=kind,  # type: ignore[arg-type]
        alarm_id=alarm_id,
        dispatcher_id=dispatcher,
        at=s.clock.now,
        **fields,
    )


async def routine_alarm(s: scenes.Scene) -> str:
    raised = await s.dispatcher.alarms.raise_(
        s.w.agency,
        f"routine:{s.w.patient.id}",
        "inactivity",
        "major",
        s.w.patient.id,
        "no movement since 10:55 (3 h 05 min)",
    )
    return raised.id


async def test_a_dispatcher_opens_an_incident_from_an_alarm_and_a_caregiver_is_offered_it(
    make_scene: SceneMaker, db: Database
) -> None:
    s = await make_scene([100, 200])
    alarm_id = await routine_alarm(s)
    stranger = alarm_hand(s, "open_incident", alarm_id, agency_id="elsewhere")
    assert await s.dispatcher.on_alarm_command(stranger) == "other_agency"
    assert await s.dispatcher.on_alarm_command(alarm_hand(s, "open_incident", "nope")) == (
        "unknown_alarm"
    )
    hand = alarm_hand(s, "open_incident", alarm_id)
    assert await s.dispatcher.on_alarm_command(hand) == "done"

    (offer,) = await s.to_cg(0, "offer")
    incident = offer["incident"]
    assert incident["kind"] == "inactivity"
    results = [
        f for f in await s.to(recipients.dispatchers(s.w.agency)) if f["type"] == "command_result"
    ]
    assert [(r["command"], r["outcome"], r.get("reason")) for r in results] == [
        ("open_incident", "refused", "unknown_alarm"),  # told her agency (the stranger's his)
        ("acknowledge", "done", None),  # her hand on it stops its ladder
        ("open_incident", "done", None),
    ]
    (opened,) = [
        e for e in await db.incident_events(incident["incident_id"]) if e.kind == "incident_opened"
    ]
    assert opened.actor == f"alarm:{alarm_id}:1"

    again = alarm_hand(s, "open_incident", alarm_id)  # a double click, or Kafka's replay
    assert await s.dispatcher.on_alarm_command(again) == "done"
    assert len(await s.to_cg(0, "offer")) == 1  # one incident, one offer


async def test_the_monitor_opens_an_incident_leaving_the_alarm_to_climb(
    make_scene: SceneMaker,
) -> None:
    s = await make_scene([100])
    alarm_id = await routine_alarm(s)
    monitor = alarm_hand(s, "open_incident", alarm_id, dispatcher="routine-monitor")
    assert await s.dispatcher.on_alarm_command(monitor) == "done"
    assert len(await s.to_cg(0, "offer")) == 1
    stored = await s.dispatcher.alarms.get(alarm_id)
    assert stored is not None and not stored.alarm.acknowledged


async def test_no_incident_from_an_alarm_already_cleared(make_scene: SceneMaker) -> None:
    s = await make_scene([100])
    alarm_id = await routine_alarm(s)
    await s.dispatcher.alarms.clear(s.w.agency, f"routine:{s.w.patient.id}", "inactivity")
    hand = alarm_hand(s, "open_incident", alarm_id, dispatcher="routine-monitor")
    assert await s.dispatcher.on_alarm_command(hand) == "alarm_cleared"
    assert await s.to_cg(0, "offer") == []
    assert s.dispatcher.alarms.refused["alarm_cleared"] == 1


@pytest.mark.parametrize("kind", ["false_alarm", "open_incident"])
async def test_a_dispatchers_new_alarm_hands_reach_kafka_keyed_by_alarm(
    gateway: Gateway, settings: Settings, kind: str
) -> None:
    alarm_id = str(uuid.uuid4())
    async with gw.client(gateway, token=gw.token(settings, "caregiver", "cg-3")) as ws:
        await gw.recv(ws)
        await gw.send(ws, {"type": kind, "alarm_id": alarm_id})
        assert (await gw.recv(ws))["reason"] == "forbidden"
    async with gw.client(gateway, token=gw.token(settings, "dispatcher", "desk-3")) as ws:
        await gw.recv(ws)
        await gw.send(ws, {"type": kind, "alarm_id": alarm_id})
        ack = await gw.recv(ws)
        assert (ack["type"], ack["command"]) == ("ack", kind)
    value = await gw.consume(settings, "offer-answers", lambda v: v.get("alarm_id") == alarm_id)
    assert value.pop("_key") == alarm_id.encode()
    assert AlarmCommand.model_validate(value).command == kind
