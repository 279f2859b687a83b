"""Ingest outlives Postgres: with its registry's Postgres stopped, ingest runs on; a phone it
has asked about before goes on through (the last answer stands in); a phone never seen is
refused as ``registry_unavailable`` once its patience has run out, dead-lettered and counted;
a pendant never seen is held, not dropped, and its fall reaches Kafka once Postgres is started
again on the same port.

The Postgres stopped is a cluster of the module's own (the session's is shared and must not
stop), started as ``careknot up`` starts one on a bare machine (``initdb``/``postgres`` on
PATH, else the ``pgserver`` wheel's); ingest runs in-process on it, with the session's
Mosquitto and Kafka in a namespace of the module's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from adapters.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow
from ingest.registry import REGISTRY_UNAVAILABLE
from ingest.service import IngestService
from kernel import keys
from kernel.settings import Settings
from kernel.waiting import poll_until
from streams.fix_flow import decode_fixes
from tests.adapters.stoppable_postgres import OwnPostgres, own_postgres
from tests.support import kafka_reader

pytestmark = pytest.mark.servers

__all__ = ["own_postgres"]  # the module's own Postgres (tests.adapters.stoppable_postgres)

TAG = uuid.uuid4().hex[:8]
AGENCY = f"po-{TAG}"
KNOWN, STRANGER = f"po-{TAG}-known", f"po-{TAG}-stranger"
"""A caregiver whose phone ingest has seen before Postgres stops, and one it has not."""
PENDANT = f"po-{TAG}-pendant"
"""A pendant registered, whose first fall comes while Postgres is stopped."""
WITHIN_S = 60.0
PHONE_PATIENCE_S = 1.0


@pytest.fixture(scope="module")
async def on_own_postgres(stack_settings: Settings, own_postgres: OwnPostgres) -> Settings:
    """The module's namespace on its own Postgres (migrated, two phones and a pendant
    registered) and the session's other servers, on a share group of its own."""
    own = stack_settings.model_copy(
        update={
            "namespace": f"t{secrets.token_hex(4)}",
            "postgres_dsn": own_postgres.dsn,
            "mqtt_share_group": f"test-po-{TAG}",
            "ingest_metrics_port": 0,
        }
    )
    async with Database(own) as db:
        await db.migrate()
        await db.upsert_agency(AGENCY, "Outage Care")
        await db.upsert_caregivers([CaregiverRow(cg, AGENCY, cg) for cg in (KNOWN, STRANGER)])
        await db.upsert_patients([PatientRow(f"po-{TAG}-patient", AGENCY, "Pat", 53.8, -1.55)])
        await db.upsert_devices([DeviceRow(PENDANT, AGENCY, f"po-{TAG}-patient", "pendant")])
    return own


@pytest.fixture
async def ingest(
    on_own_postgres: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[IngestService, asyncio.Task[None]]]:
    """Ingest of positions and device events, whose cached answers are never fresh (so each
    message asks Postgres), and a phone's patience short."""
    monkeypatch.setattr("ingest.registry.HIT_TTL_S", 0.0)
    monkeypatch.setattr("ingest.registry.PHONE_PATIENCE_S", PHONE_PATIENCE_S)
    async with IngestService(on_own_postgres) as service:
        task = asyncio.create_task(service.run(), name="ingest-under-test")
        await asyncio.wait_for(service.subscribed.wait(), WITHIN_S)
        yield service, task
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class Out:
    """What came out of Kafka: fixes by caregiver, falls by device, dead letters."""

    settings: Settings
    reader: AIOKafkaConsumer
    task: asyncio.Task[None]
    fixes: set[str] = field(default_factory=set)
    falls: set[str] = field(default_factory=set)
    letters: list[dict[str, Any]] = field(default_factory=list)

    async def read(self) -> None:
        if self.task.done():
            pytest.fail(f"ingest ended: {self.task.exception()!r}")
        topic = self.settings.keys.topic
        for tp, records in (await self.reader.getmany(timeout_ms=200)).items():
            values = [r.value for r in records if r.value]
            if tp.topic == topic(keys.FIXES):
                self.fixes |= {f.caregiver_id for f in decode_fixes(values)}
            elif tp.topic == topic(keys.DEVICE_EVENTS):
                self.falls |= {orjson.loads(v)["device_id"] for v in values}
            else:
                self.letters += [orjson.loads(v) for v in values]

    def letters_from(self, subject: str) -> list[dict[str, Any]]:
        return [letter for letter in self.letters if f"/{subject}/" in letter["source"]]


@contextlib.asynccontextmanager
async def reading(settings: Settings, task: asyncio.Task[None]) -> AsyncIterator[Out]:
    names = (keys.FIXES, keys.DEVICE_EVENTS, keys.DEADLETTER)
    async with kafka_reader(settings, *names) as reader:
        yield Out(settings, reader, task)


async def publish_fix(settings: Settings, caregiver: str) -> None:
    fix = {"lat": 53.8, "lon": -1.55, "tst": int(time.time()), "acc": 9}
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as phone:
        await phone.publish(f"ck/{AGENCY}/cg/{caregiver}/loc", orjson.dumps(fix), qos=1)


async def publish_fall(settings: Settings, device: str) -> None:
    fall = {"type": "fall", "ts": time.time(), "seq": 1}
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as pendant:
        await pendant.publish(f"ck/{AGENCY}/dev/{device}/evt", orjson.dumps(fall), qos=1)


async def fix_through(out: Out, settings: Settings, caregiver: str) -> None:
    """Publish a fix of ``caregiver``'s each poll until one reaches Kafka."""
    out.fixes.discard(caregiver)

    async def through() -> bool | None:
        await publish_fix(settings, caregiver)
        await out.read()
        return True if caregiver in out.fixes else None

    await poll_until(through, WITHIN_S, f"a fix of {caregiver} through ingest")


def rejected(service: IngestService, reason: str) -> float:
    samples = service.metrics.registry
    value = samples.get_sample_value("careknot_ingest_rejected_total", {"reason": reason})
    return value or 0.0


async def test_ingest_outlives_its_registrys_postgres(
    on_own_postgres: Settings,
    own_postgres: OwnPostgres,
    ingest: tuple[IngestService, asyncio.Task[None]],
) -> None:
    s = on_own_postgres
    service, task = ingest
    async with reading(s, task) as out:
        await fix_through(out, s, KNOWN)

        await asyncio.to_thread(own_postgres.stop)
        await publish_fall(s, PENDANT)
        await publish_fix(s, STRANGER)
        await fix_through(out, s, KNOWN)  # the registry's last answer stands in

        async def stranger_refused() -> bool | None:
            await out.read()
            return True if out.letters_from(STRANGER) else None

        await poll_until(stranger_refused, WITHIN_S, "the stranger's fix refused")
        [letter] = out.letters_from(STRANGER)
        assert letter["reason"] == REGISTRY_UNAVAILABLE
        assert service._registry.outage.since is not None  # Postgres is still away
        assert PENDANT not in out.falls  # held: the registry has not answered about it

        await asyncio.to_thread(own_postgres.start_again)

        async def fell() -> bool | None:
            await out.read()
            return True if PENDANT in out.falls else None

        await poll_until(fell, WITHIN_S, "the pendant's fall through once Postgres is back")
        await fix_through(out, s, STRANGER)
    assert out.letters_from(PENDANT) == []
    assert [letter["reason"] for letter in out.letters if AGENCY in letter["source"]] == [
        REGISTRY_UNAVAILABLE
    ]
    assert rejected(service, REGISTRY_UNAVAILABLE) >= 1.0  # the broker is shared: maybe more
    assert rejected(service, "internal_error") == 0.0
    assert not task.done()
