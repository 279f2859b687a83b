"""Redis lost its data (restarted without persistence, flushed) while an incident waited: the
dispatch worker that notices puts the live picture back and tells again what clients hold.
Against the real Postgres and Redis; the loss is the namespace's keys deleted."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from adapters.storage.connection import RedisConnection
from adapters.storage.postgres import Database
from kernel import recipients
from kernel.settings import Settings
from tests.adapters.scenes import SceneMaker

pytestmark = pytest.mark.servers


async def lose_everything(redis: aioredis.Redis, settings: Settings) -> None:
    keys = [key async for key in redis.scan_iter(match=settings.keys.everything())]
    assert keys
    await redis.delete(*keys)


async def test_after_redis_lost_its_data_standing_offers_and_incidents_are_told_again(
    make_scene: SceneMaker, db: Database, redis: aioredis.Redis, settings: Settings
) -> None:
    s = await make_scene([100, 200], offer_window_by_severity={1: 3600.0})
    connection = RedisConnection(redis)
    await connection.lost_its_data(settings.keys)  # the mark, as the first worker set it
    incident = await s.dispatcher.on_device_event(s.event())
    assert incident is not None
    (offer,) = await s.to_cg(0, "offer")
    assert not await connection.lost_its_data(settings.keys)
    await lose_everything(redis, settings)
    assert await connection.lost_its_data(settings.keys)
    assert not await connection.lost_its_data(settings.keys)  # told once
    await s.dispatcher.resync()
    rebuilt = await connection.rebuild(db, settings)
    assert rebuilt.offers >= 1  # hers among the namespace's standing offers
    (again,) = await s.to_cg(0, "offer")  # the same offer, in the new stream
    assert (again["offer_id"], again["seq"]) == (offer["offer_id"], 1)
    assert again["epoch"] > offer["epoch"]
    for recipient in (
        recipients.dispatchers(s.w.agency),
        recipients.family_of(s.w.agency, s.w.patient.id),
    ):
        frames = await s.incident_frames(recipient)
        assert [(f["incident_id"], f["state"]) for f in frames] == [(incident.id, "offered")]
    await s.answer(0, "accept")  # her answer is taken: the offer record is back
    assert [f["outcome"] for f in await s.to_cg(0, "offer_result")] == ["assigned"]
