"""What the agency's dispatchers are told of offers, against the real Postgres and Redis: an
``offer_status`` frame in their outbox for each offer made (whom, until when) and for each
change of it (accepted, declined, expired, taken, cancelled), kept and told with the step that
made it, and told again when Redis lost the outboxes.

Fixtures come from conftest.py and the small world from ``tests.adapters.scenes`` (same
servers, a namespace of this module's own).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.storage.postgres import Database
from kernel import recipients
from kernel.contracts import DispatcherCommand, OfferAnswer, OfferStatusFrame
from kernel.settings import Settings
from tests.adapters import scenes
from tests.adapters.scenes import SceneMaker

pytestmark = pytest.mark.servers


async def offer_states(s: scenes.Scene) -> list[tuple[str, str]]:
    """(caregiver, state) of each ``offer_status`` frame the dispatchers were sent, in order;
    each frame checked against its contract."""
    frames = [
        f for f in await s.to(recipients.dispatchers(s.w.agency)) if f["type"] == "offer_status"
    ]
    for f in frames:
        OfferStatusFrame.model_validate({k: v for k, v in f.items() if k not in ("seq", "epoch")})
    return [(f["caregiver_id"], f["state"]) for f in frames]


async def offer_frames(s: scenes.Scene) -> list[dict[str, Any]]:
    return [
        f for f in await s.to(recipients.dispatchers(s.w.agency)) if f["type"] == "offer_status"
    ]


async def test_dispatchers_see_each_offer_made_and_each_answer(make_scene: SceneMaker) -> None:
    s = await make_scene([100, 200, 300], offer_window_by_severity={1: 3600})
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    (made,) = await offer_frames(s)
    (offer,) = await s.to_cg(0, "offer")
    assert made["offer_id"] == offer["offer_id"]
    assert made["incident_id"] == incident.id
    assert (made["caregiver_id"], made["state"]) == (s.w.cg(0), "offered")
    assert made["expires_at"] == pytest.approx(offer["expires_at"])
    assert made["eta_s"] == pytest.approx(offer["incident"]["eta_s"])

    s.clock.now += 1
    await s.answer(0, "decline")  # the next is asked
    s.clock.now += 1
    await s.answer(1, "accept")
    assert await offer_states(s) == [
        (s.w.cg(0), "offered"),
        (s.w.cg(0), "declined"),
        (s.w.cg(1), "offered"),
        (s.w.cg(1), "accepted"),
    ]
    frames = [f for f in await s.to(recipients.dispatchers(s.w.agency)) if "seq" in f]
    kinds = [f["type"] for f in frames]
    assert kinds.index("offer_status") < kinds.index("incident")  # the offer, then its state
    assert frames[-1]["type"] == "incident" and frames[-1]["state"] == "assigned"


async def test_dispatchers_see_offers_expire_and_others_taken(make_scene: SceneMaker) -> None:
    s = await make_scene([100, 200, 300, 400], offer_window_by_severity={1: 30}, offer_wave_size=2)
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    s.clock.now += 31
    await s.dispatcher.tick()  # both unanswered: expired, and the next wave asks the others
    assert sorted(await offer_states(s)) == [
        (s.w.cg(0), "expired"),
        (s.w.cg(0), "offered"),
        (s.w.cg(1), "expired"),
        (s.w.cg(1), "offered"),
        (s.w.cg(2), "offered"),
        (s.w.cg(3), "offered"),
    ]
    s.clock.now += 1
    told = len(await offer_states(s))
    await s.answer(2, "accept")  # the fourth's offer, still out, is taken
    assert sorted((await offer_states(s))[told:]) == [
        (s.w.cg(2), "accepted"),
        (s.w.cg(3), "taken"),
    ]


async def test_dispatchers_see_offers_taken_by_hand_or_cancelled(make_scene: SceneMaker) -> None:
    s = await make_scene([100, 200, 300], offer_window_by_severity={1: 3600}, offer_wave_size=2)
    first = await s.dispatcher.on_device_event(s.event())
    assert first is not None
    await s.dispatcher.on_command(_command(s, "assign", first.id, caregiver_id=s.w.cg(2)))
    assert sorted((await offer_states(s))[2:]) == [(s.w.cg(0), "taken"), (s.w.cg(1), "taken")]

    s.clock.now += 120  # another incident, later: resolved while offered
    second = await s.dispatcher.on_device_event(s.event(2))
    assert second is not None
    before = len(await offer_states(s))
    await s.dispatcher.on_command(_command(s, "resolve", second.id))
    after = await offer_frames(s)
    assert {f["incident_id"] for f in after[before:]} == {second.id}
    assert [f["state"] for f in after[before:]] == ["cancelled", "cancelled"]


async def test_offers_still_out_when_one_is_accepted_are_taken(make_scene: SceneMaker) -> None:
    s = await make_scene([100, 200], offer_window_by_severity={1: 3600}, offer_wave_size=2)
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    await s.answer(0, "accept")
    await s.answer(1, "accept")  # too late: her offer was taken, and nothing more is told
    assert await offer_states(s) == [
        (s.w.cg(0), "offered"),
        (s.w.cg(1), "offered"),
        (s.w.cg(0), "accepted"),
        (s.w.cg(1), "taken"),
    ]


async def test_an_accept_finding_its_incident_no_longer_waiting_is_told_taken_to_its_agency(
    make_scene: SceneMaker, db: Database
) -> None:
    """Her offer still pending, its incident no longer offered: every step that moves an
    incident on takes or cancels its pending offers in the same transaction, so no step of the
    system leaves it so, and it is staged here as one that forgot them would leave it. Her
    result is ``taken``, and the offer's state goes to the dispatchers of the incident's agency
    as Postgres has it, whatever agency the answer says it came from."""
    s = await make_scene([100], offer_window_by_severity={1: 3600})
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    await db.pool.execute(
        "UPDATE incidents SET state = 'assigned', assignee_id = $2 WHERE id = $1",
        uuid.UUID(incident.id),
        s.w.cg(0),
    )
    (offer,) = await s.to_cg(0, "offer")
    elsewhere = f"{s.w.agency}-elsewhere"
    await s.dispatcher.on_answer(
        OfferAnswer(
            answer_id="ans-late",
            offer_id=offer["offer_id"],
            incident_id=incident.id,
            caregiver_id=s.w.cg(0),
            agency_id=elsewhere,
            answer="accept",
            at=s.clock.now,
        )
    )
    assert [f["outcome"] for f in await s.to_cg(0, "offer_result")] == ["taken"]
    assert await offer_states(s) == [(s.w.cg(0), "offered"), (s.w.cg(0), "taken")]
    assert await s.to(recipients.dispatchers(elsewhere)) == []


def _command(s: scenes.Scene, kind: Any, incident_id: str, **more: Any) -> DispatcherCommand:
    return DispatcherCommand(
        command_id=uuid.uuid4().hex,
        command=kind,
        incident_id=incident_id,
        agency_id=s.w.agency,
        dispatcher_id="desk",
        at=s.clock.now,
        **more,
    )


async def test_after_redis_lost_its_data_the_dispatchers_are_told_the_standing_offers_again(
    make_scene: SceneMaker, redis: aioredis.Redis, settings: Settings
) -> None:
    s = await make_scene([100], offer_window_by_severity={1: 3600.0})
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    (before,) = await offer_frames(s)
    keys = [key async for key in redis.scan_iter(match=settings.keys.everything())]
    await redis.delete(*keys)  # the outboxes and offer records lost with the rest
    assert await offer_frames(s) == []
    await s.dispatcher.resync()
    (again,) = await offer_frames(s)
    assert (again["offer_id"], again["state"]) == (before["offer_id"], "offered")
    assert again["expires_at"] == pytest.approx(before["expires_at"], abs=1e-3)  # as kept
