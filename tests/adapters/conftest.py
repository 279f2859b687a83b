"""Fixtures of the adapter tests: a namespace of the module's own on the session's servers
(Postgres schema and Redis key prefix, removed at teardown), the stores on it, and scenes of a
dispatcher over them (``make_scene``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from adapters.storage import outbox
from adapters.storage.connection import RedisConnection
from adapters.storage.live import LiveIndex
from adapters.storage.live_mirror import LiveMirror
from adapters.storage.namespace import drop_namespace
from adapters.storage.postgres import Database
from ingest.service import end_sessions
from kernel.errors import BrokerUnavailable
from kernel.settings import Settings
from streams.dispatcher import Dispatcher
from tests.adapters.api_clients import client_of
from tests.adapters.scenes import Clock, Scene, SceneMaker, fix, north, seed


@pytest.fixture(scope="module")
async def settings(migrated: Settings) -> AsyncIterator[Settings]:
    """The session's servers, with a namespace of this module's own."""
    own = migrated.model_copy(update={"namespace": f"t{uuid.uuid4().hex[:8]}"})
    yield own
    await drop_namespace(own)
    with contextlib.suppress(BrokerUnavailable):
        await end_sessions(own)  # what the broker would queue for this module's ingest


@pytest.fixture(scope="module")
async def first_migration(settings: Settings) -> list[int]:
    async with Database(settings) as db:
        return await db.migrate()


@pytest.fixture(scope="module")
async def db(settings: Settings, first_migration: list[int]) -> AsyncIterator[Database]:
    async with Database(settings) as database:
        yield database


@pytest.fixture(scope="module")
async def db2(db: Database, settings: Settings) -> AsyncIterator[Database]:
    """A second pool on the same schema: another process."""
    async with Database(settings) as database:
        yield database


@pytest.fixture(scope="module")
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def live(redis: aioredis.Redis, settings: Settings) -> LiveIndex:
    return LiveIndex(redis, settings)


@pytest.fixture(scope="module")
async def mirror(redis: aioredis.Redis, settings: Settings) -> AsyncIterator[LiveMirror]:
    """A dispatch worker's copy of the module's live index, following it."""
    m = LiveMirror(redis, settings)
    task = asyncio.create_task(m.run())
    await m.wait_ready()
    yield m
    task.cancel()


@pytest.fixture(scope="module")
def box(redis: aioredis.Redis, settings: Settings) -> outbox.Outbox:
    return outbox.Outbox(redis, settings)


@pytest.fixture(scope="module")
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP API in process, its lifespan entered (Postgres and Redis open)."""
    async for client in client_of(settings):
        yield client


@pytest.fixture(params=["redis", "copy"])
def make_scene(
    request: pytest.FixtureRequest,
    settings: Settings,
    db: Database,
    redis: aioredis.Redis,
    live: LiveIndex,
    box: outbox.Outbox,
    mirror: LiveMirror,
) -> SceneMaker:
    """Scenes whose dispatcher searches Redis, or (``copy``) its copy of the index."""
    copy = mirror if request.param == "copy" else None

    async def make(
        distances_m: list[float], ages_s: dict[int, float] | None = None, **changes: Any
    ) -> Scene:
        """Caregiver i stands ``distances_m[i]`` north of the patient, fix ``ages_s[i]`` old."""
        w = await seed(db, caregivers=len(distances_m))
        clock = Clock(time.time())
        ages = ages_s or {}
        fixes = [
            fix(w.cg(i), w.agency, north(d), clock.now - ages.get(i, 0.0))
            for i, d in enumerate(distances_m)
        ]
        await live.update(fixes)
        dispatcher = Dispatcher(
            settings.model_copy(update=changes),
            db,
            RedisConnection(redis),
            clock=clock,
            mirror=copy,
        )
        return Scene(w, clock, dispatcher, box, copy)

    return make
