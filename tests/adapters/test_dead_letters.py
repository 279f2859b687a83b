"""A dispatch worker against the real Kafka, Postgres and Redis: Kafka values it cannot decode
(garbage, JSON ``null``, a tombstone) are dead-lettered with their reason and source and
counted, and the fall behind them on the same partition is handled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from adapters import kafka
from adapters.storage.postgres import Database
from careknot.up import settings_env
from kernel import keys
from kernel.contracts import DeviceEvent
from kernel.settings import Settings
from kernel.waiting import poll_until
from tests.adapters.scenes import seed
from tests.support import free_port, scrape

pytestmark = pytest.mark.servers

WITHIN_S = 90.0
STOP_WITHIN_S = 60.0


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A dispatch worker (``careknot worker --role dispatch``) in the module's namespace."""
    own = settings.model_copy(
        update={"worker_datadir": str(tmp_path / "worker"), "dispatch_metrics_port": free_port()}
    )
    argv = [sys.executable, "-m", "careknot.cli", "worker", "--role", "dispatch"]
    with (tmp_path / "worker.log").open("wb") as log_file:
        proc = subprocess.Popen(
            argv, env={**os.environ, **settings_env(own)}, stdout=log_file, stderr=log_file
        )
    try:
        yield own
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sys.stderr.write((tmp_path / "worker.log").read_text(errors="replace")[-4000:])


async def produce(
    settings: Settings, key: str, values: list[bytes | None], name: str = keys.DEVICE_EVENTS
) -> None:
    """Values in order on one partition (one key) of the logical topic ``name``."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for value in values:
            topic = settings.keys.topic(name)
            await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()


async def dead_letters(settings: Settings, wanted: int) -> list[dict[str, Any]]:
    """The first ``wanted`` records of the dead-letter topic."""
    consumer = AIOKafkaConsumer(
        settings.keys.topic(keys.DEADLETTER),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    letters: list[dict[str, Any]] = []

    async def enough() -> list[dict[str, Any]] | None:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            letters.extend(orjson.loads(r.value) for r in records if r.value)
        return letters if len(letters) >= wanted else None

    try:
        return await poll_until(enough, WITHIN_S, f"{wanted} dead letters")
    finally:
        await consumer.stop()


async def test_undecodable_device_events_are_dead_lettered_and_the_fall_behind_is_handled(
    settings: Settings, db: Database, worker: Settings
) -> None:
    await kafka.ensure_topics(settings, keys.TOPICS)
    w, now = await seed(db, caregivers=1), time.time()
    fall = DeviceEvent(
        event_id=f"{w.device.id}:1",
        agency_id=w.agency,
        device_id=w.device.id,
        type="fall",
        ts=now,
        seq=1,
        received_at=now,
    )
    await produce(
        settings, w.device.id, [b"{not json", b"null", None, fall.model_dump_json().encode()]
    )

    async def incident() -> str | None:
        found = await db.pool.fetchval(
            "SELECT state FROM incidents WHERE source_event_id = $1", fall.event_id
        )
        return None if found is None else str(found)

    assert await poll_until(incident, WITHIN_S, "the fall's incident") in ("open", "escalated")
    letters = await dead_letters(settings, 3)
    source = settings.keys.topic(keys.DEVICE_EVENTS)
    # keyed by reason, so on partitions of their own: in no order across them
    assert sorted((d["reason"], d["source"], d["payload"]) for d in letters) == [
        ("tombstone", source, ""),
        ("undecodable", source, "null"),
        ("undecodable", source, "{not json"),
    ]
    assert all(d["detail"] for d in letters if d["reason"] == "undecodable")
    metrics = await scrape(worker.dispatch_metrics_port)
    counted = 'careknot_worker_dead_letters_total{reason="undecodable",topic="device-events"} 2.0'
    assert counted in metrics
    assert (
        'careknot_worker_dead_letters_total{reason="tombstone",topic="device-events"} 1.0'
        in metrics
    )


async def test_what_is_neither_an_answer_nor_a_command_is_dead_lettered(
    settings: Settings, worker: Settings
) -> None:
    await kafka.ensure_topics(settings, keys.TOPICS)
    await produce(settings, "incident-x", [b'{"answer": "accept"}', None], keys.OFFER_ANSWERS)
    source = settings.keys.topic(keys.OFFER_ANSWERS)

    async def parked() -> list[tuple[str, str]] | None:
        letters = await dead_letters(settings, 1)
        found = sorted((d["reason"], d["payload"]) for d in letters if d["source"] == source)
        return found if len(found) == 2 else None

    assert await poll_until(parked, WITHIN_S, "the answers' dead letters") == [
        ("tombstone", ""),
        ("undecodable", '{"answer": "accept"}'),
    ]
