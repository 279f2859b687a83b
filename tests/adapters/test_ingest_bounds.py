"""Ingest's memory stays bounded whatever devices send: through the real Mosquitto, Kafka and
Postgres, a publish far over the size cap (Mosquitto lets through up to 256 MiB) is refused as
it arrives, dead-lettered as ``too_large`` with the first bytes of its payload and counted, and
acknowledged (more of them than the broker lets wait unacknowledged still let the fall behind
them through), ingest running on.

Ingest runs in-process with the emergencies' connection only, in a namespace of the module's
own, its share group its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import orjson
import pytest

from adapters.storage.postgres import Database, DeviceRow, PatientRow
from ingest.parse import TOPIC_ROOM
from ingest.service import IngestService
from kernel import keys
from kernel.settings import Settings
from kernel.waiting import poll_until
from tests.support import kafka_reader

pytestmark = pytest.mark.servers

TAG = uuid.uuid4().hex[:8]
AGENCY = f"bn-{TAG}"
PENDANT = f"bn-{TAG}-pendant"
TOPIC = f"ck/{AGENCY}/dev/{PENDANT}/evt"
WITHIN_S = 60.0
UNACKNOWLEDGED_AT_MOST = 20
"""Mosquitto's default ``max_inflight_messages``: QoS 1 messages it sends a client before it
waits for their acknowledgements."""


@pytest.fixture(scope="module")
async def registered(settings: Settings, db: Database) -> Settings:
    await db.upsert_agency(AGENCY, "Bounds Care")
    await db.upsert_patients([PatientRow(f"bn-{TAG}-patient", AGENCY, "Pat", 53.8, -1.55)])
    await db.upsert_devices([DeviceRow(PENDANT, AGENCY, f"bn-{TAG}-patient", "pendant")])
    return settings.model_copy(
        update={"mqtt_share_group": f"test-bn-{TAG}", "ingest_metrics_port": 0}
    )


@pytest.fixture
async def ingest(registered: Settings) -> AsyncIterator[tuple[IngestService, asyncio.Task[None]]]:
    async with IngestService(registered) as service:
        task = asyncio.create_task(service.run("emergencies"), name="ingest-under-test")
        await asyncio.wait_for(service.subscribed.wait(), WITHIN_S)
        yield service, task
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def fall(seq: int) -> bytes:
    return orjson.dumps({"type": "fall", "ts": time.time(), "seq": seq})


def counted(service: IngestService, name: str, labels: dict[str, str] | None = None) -> float:
    value = service.metrics.registry.get_sample_value(name, labels or {})
    return value or 0.0


async def test_publishes_over_the_cap_are_refused_unread_acknowledged_and_ingest_goes_on(
    registered: Settings, ingest: tuple[IngestService, asyncio.Task[None]]
) -> None:
    service, task = ingest
    huge = b"[" + b"0," * (10 * 1024 * 1024) + b"0]"  # 20 MiB
    just_over = b"y" * (registered.max_payload_bytes + TOPIC_ROOM)
    refused = [huge] + [just_over] * (UNACKNOWLEDGED_AT_MOST + 5)
    async with aiomqtt.Client(registered.mqtt_host, registered.mqtt_port) as pendant:
        for payload in [*refused, fall(1)]:
            await pendant.publish(TOPIC, payload, qos=1, timeout=WITHIN_S)

    letters: list[dict[str, Any]] = []
    async with kafka_reader(registered, keys.DEVICE_EVENTS, keys.DEADLETTER) as reader:
        falls: set[int] = set()

        async def all_out() -> bool | None:
            if task.done():
                pytest.fail(f"ingest ended: {task.exception()!r}")
            for tp, records in (await reader.getmany(timeout_ms=200)).items():
                values = [orjson.loads(r.value) for r in records if r.value]
                if tp.topic == registered.keys.topic(keys.DEVICE_EVENTS):
                    falls.update(v["seq"] for v in values if v["device_id"] == PENDANT)
                else:
                    letters.extend(v for v in values if v["source"] == TOPIC)
            return True if 1 in falls and len(letters) == len(refused) else None

        await poll_until(all_out, WITHIN_S, "the fall and a dead letter for each refused")

    assert {letter["reason"] for letter in letters} == {"too_large"}
    first = next(
        letter for letter in letters if str(len(huge) + len(TOPIC) + 4) in letter["detail"]
    )
    assert first["payload"] == huge[:1024].decode()
    too_large = counted(service, "careknot_ingest_rejected_total", {"reason": "too_large"})
    assert too_large >= len(refused)  # the broker is shared: others' may be counted too
    wire = sum(len(p) + 2 + len(TOPIC) + 2 for p in refused)
    assert counted(service, "careknot_ingest_refused_bytes_total") >= wire
    assert not task.done()
