"""The devices worker as ``careknot up`` runs it (``careknot worker --role devices``, a process
of its own on the real Kafka, Postgres and Redis): a fall detector whose heartbeats stop is a
critical ``device_offline`` alarm told to the dispatchers, cleared when it is back; a device
that flaps raises one ``flapping`` alarm, not an offline alarm per drop; every device event is
kept in its home's history once.

The statuses are produced to the device-status topic as ingest produces them. Nothing waits on
the clock: the test waits for what the worker tells the dispatchers, and a device's last
status (a low battery) says the worker has handled those before it (one device's statuses are
one partition's, in order).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
import redis.asyncio as aioredis

from adapters import kafka
from adapters.storage.device_history import DeviceHistory, KeptEvent
from adapters.storage.outbox import Outbox
from adapters.storage.postgres import Database, DeviceRow, PatientRow
from careknot.running import worker_ready
from careknot.up import settings_env
from kernel import keys, recipients
from kernel.contracts import DeviceEvent, DeviceStatus
from kernel.settings import Settings
from kernel.waiting import poll_until

pytestmark = pytest.mark.servers

TAG = uuid.uuid4().hex[:8]
AGENCY = f"dw-{TAG}"
READY_WITHIN_S = 90.0
TOLD_WITHIN_S = 30.0


@pytest.fixture(scope="module")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """``careknot worker --role devices`` in the module's namespace; stopped with SIGTERM."""
    workdir: Path = tmp_path_factory.mktemp("devices-worker")
    own = settings.model_copy(update={"worker_datadir": str(workdir / "worker")})
    env = {**os.environ, **settings_env(own)}
    cmd = [sys.executable, "-m", "careknot.cli", "worker", "--role", "devices"]
    with (workdir / "worker.log").open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield own
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    sys.stderr.write((workdir / "worker.log").read_text()[-3000:])


@pytest.fixture(scope="module")
async def producer(worker: Settings, db: Database) -> AsyncIterator[kafka.Producer]:
    """What ingest produces with, once the worker holds its partitions."""
    await kafka.ensure_topics(worker, keys.TOPICS)
    await db.upsert_agency(AGENCY, "Devices Worker Care")
    p = kafka.Producer(worker, acks="all")
    await p.start()
    await worker_ready(worker, READY_WITHIN_S, ("devices",))
    yield p
    await p.stop()


async def registered(db: Database, kind: str) -> str:
    device = f"dw-{TAG}-{uuid.uuid4().hex[:6]}"
    await db.upsert_patients([PatientRow(f"{device}-p", AGENCY, "Olive", 53.8, -1.55)])
    await db.upsert_devices([DeviceRow(device, AGENCY, f"{device}-p", kind)])
    return device


async def says(
    producer: kafka.Producer,
    device: str,
    what: Literal["heartbeat", "online", "offline"],
    battery: int = 80,
) -> None:
    now = time.time()
    status = DeviceStatus(
        event_id=f"{device}:{what}:{now!r}",
        agency_id=AGENCY,
        device_id=device,
        status=what,
        received_at=now,
        ts=now if what == "heartbeat" else None,
        battery=battery if what == "heartbeat" else None,
        interval_s=1.0 if what == "heartbeat" else None,
    )
    await producer.send_and_wait(keys.DEVICE_STATUS, status.model_dump_json().encode(), key=device)


async def alarms_of(worker: Settings, device: str) -> list[dict[str, Any]]:
    r = aioredis.Redis.from_url(worker.redis_url)
    try:
        sent = await Outbox(r, worker).since(recipients.dispatchers(AGENCY), 0)
    finally:
        await r.aclose()
    frames = [orjson.loads(m) for m in sent]
    return [f for f in frames if f["type"] == "alarm" and f["source"] == f"device:{device}"]


async def told(worker: Settings, device: str, kind: str, status: str) -> list[dict[str, Any]]:
    """The device's alarm frames, once one of ``kind`` says ``status``."""

    async def arrived() -> list[dict[str, Any]] | None:
        frames = await alarms_of(worker, device)
        return frames if any((f["kind"], f["status"]) == (kind, status) for f in frames) else None

    return await poll_until(arrived, TOLD_WITHIN_S, f"{kind} {status} for {device}")


async def test_a_fall_detector_whose_heartbeats_stop_is_an_alarm_until_it_is_back(
    worker: Settings, producer: kafka.Producer, db: Database
) -> None:
    detector = await registered(db, "fall_detector")
    await says(producer, detector, "heartbeat")  # beats every second, then nothing
    [offline] = await told(worker, detector, "device_offline", "active_unack")
    assert (offline["severity"], offline["patient_id"]) == ("critical", f"{detector}-p")
    await says(producer, detector, "online")
    frames = await told(worker, detector, "device_offline", "cleared_unack")
    assert {f["alarm_id"] for f in frames} == {offline["alarm_id"]}


async def test_a_flapping_device_raises_one_alarm_not_many(
    worker: Settings, producer: kafka.Producer, db: Database
) -> None:
    pendant = await registered(db, "pendant")
    for _ in range(8):
        await says(producer, pendant, "offline")
        await says(producer, pendant, "online")
    await says(producer, pendant, "heartbeat", battery=5)  # handled after all the rest
    frames = await told(worker, pendant, "low_battery", "active_unack")
    alarms = {(f["kind"], f["alarm_id"]) for f in frames if f["kind"] != "low_battery"}
    kinds = sorted(kind for kind, _ in alarms)
    assert kinds == ["device_offline", "device_offline", "flapping"]
    flapping = [f for f in frames if f["kind"] == "flapping"]
    assert [f["status"] for f in flapping] == ["active_unack"]  # told once, for 8 drops


async def test_every_device_event_is_kept_in_its_homes_history_once(
    worker: Settings, producer: kafka.Producer, db: Database
) -> None:
    sensor = await registered(db, "motion_sensor")
    now = time.time()
    events = [
        DeviceEvent(
            event_id=f"{sensor}:{seq}:{round((now + seq) * 1000)}",
            agency_id=AGENCY,
            device_id=sensor,
            type="motion",
            ts=now + seq,
            seq=seq,
            data={"room": "kitchen" if seq % 2 else "hall"},
            received_at=now + seq,
        )
        for seq in range(5)
    ]
    e = [event.model_dump(mode="json") for event in events]
    as_ingest_packs = [[e[0], e[1], e[2]], e[3], [e[2], e[4]]]  # the third delivered again
    for value in as_ingest_packs:
        await producer.send_and_wait(keys.HOME_ACTIVITY, orjson.dumps(value), key=sensor)
    history = DeviceHistory(db)

    async def all_kept() -> list[KeptEvent] | None:
        kept = await history.of_patient(f"{sensor}-p", now - 1, now + 60)
        return kept if len(kept) >= len(events) else None

    kept = await poll_until(all_kept, TOLD_WITHIN_S, f"the history of {sensor}")
    assert [k.event_id for k in kept] == [e.event_id for e in events]
    assert [k.data["room"] for k in kept] == ["hall", "kitchen", "hall", "kitchen", "hall"]
