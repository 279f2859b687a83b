"""The dispatcher outlives its Postgres: a fall handled while Postgres is stopped is retried until
it is started again, then offered, once; the offer timer's tick fails without raising meanwhile.

The Postgres stopped is a cluster of the module's own (the session's is shared and must not stop),
as in test_ingest_postgres_outage; Redis is the session's, in a namespace of the module's own.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial

import orjson
import pytest
import redis.asyncio as aioredis

from adapters.storage.connection import RedisConnection
from adapters.storage.incidents import IncidentRow
from adapters.storage.live import LiveIndex
from adapters.storage.outbox import Outbox
from adapters.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow
from kernel import recipients
from kernel.contracts import DeviceEvent, FixEvent
from kernel.settings import Settings
from streams.dispatcher import Dispatcher
from streams.handling import with_retries
from tests.adapters.stoppable_postgres import OwnPostgres, own_postgres
from tests.support import wait_for

pytestmark = pytest.mark.servers

__all__ = ["own_postgres"]  # the module's own Postgres (tests.adapters.stoppable_postgres)

TAG = uuid.uuid4().hex[:8]
AGENCY, PATIENT, PENDANT, CAREGIVER = (f"do-{TAG}-{what}" for what in ("ag", "p", "pendant", "cg"))
HOME = (53.8, -1.55)


@pytest.fixture(scope="module")
async def settings(stack_settings: Settings, own_postgres: OwnPostgres) -> Settings:
    s = stack_settings.model_copy(
        update={
            "namespace": f"t{secrets.token_hex(4)}",
            "postgres_dsn": own_postgres.dsn,
            "offer_window_by_severity": {1: 3600.0},
        }
    )
    async with Database(s) as db:
        await db.migrate()
        await db.upsert_agency(AGENCY, "Outage Care")
        await db.upsert_caregivers([CaregiverRow(CAREGIVER, AGENCY, "Ann")])
        await db.upsert_patients([PatientRow(PATIENT, AGENCY, "Pat", *HOME)])
        await db.upsert_devices([DeviceRow(PENDANT, AGENCY, PATIENT, "pendant")])
    return s


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(settings.redis_url)
    now = time.time()
    near = FixEvent(
        event_id=uuid.uuid4().hex,
        agency_id=AGENCY,
        caregiver_id=CAREGIVER,
        lat=HOME[0] + 0.002,
        lon=HOME[1],
        ts=now,
        received_at=now,
    )
    await LiveIndex(client, settings).update([near])
    yield client
    await client.aclose()


def fall(n: int) -> DeviceEvent:
    now = time.time()
    return DeviceEvent(
        event_id=f"{PENDANT}:{n}",
        agency_id=AGENCY,
        device_id=PENDANT,
        type="fall",
        ts=now,
        seq=n,
        received_at=now,
    )


class Counted:
    """The dispatcher's step for a fall, with how often it was tried."""

    def __init__(self, dispatcher: Dispatcher, event: DeviceEvent) -> None:
        self.dispatcher, self.event, self.tries = dispatcher, event, 0

    async def __call__(self) -> IncidentRow | None:
        self.tries += 1
        return await self.dispatcher.on_device_event(self.event)

    async def tried(self, times: int) -> bool | None:
        return True if self.tries >= times else None


async def test_a_fall_handled_while_postgres_is_stopped_is_offered_once_it_is_back(
    settings: Settings, own_postgres: OwnPostgres, redis: aioredis.Redis
) -> None:
    parked: list[tuple[str, str]] = []

    async def park(reason: str, detail: str) -> None:
        parked.append((reason, detail))

    async with Database(settings) as db:
        dispatcher = Dispatcher(settings, db, RedisConnection(redis))
        own_postgres.stop()
        step = Counted(dispatcher, fall(1))
        handling = asyncio.create_task(with_retries("fall 1", step, park))
        # more tries than a step got before it was given up (five): the outage outlasts them
        await wait_for(partial(step.tried, 6), 30, "six tries while Postgres is stopped")
        assert await dispatcher.tick() is False  # fails, raises nothing
        await asyncio.to_thread(own_postgres.start_again)
        incident = await asyncio.wait_for(handling, 60)
        assert incident is not None
        assert parked == []
        assert await dispatcher.tick() is True
    box = Outbox(redis, settings)
    offers = [orjson.loads(m) for m in await box.since(recipients.caregiver(CAREGIVER), 0)]
    assert [(o["type"], o["incident"]["incident_id"]) for o in offers] == [("offer", incident.id)]
