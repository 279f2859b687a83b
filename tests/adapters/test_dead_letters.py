"""A dispatch worker against the real Kafka, Postgres and Redis: Kafka values it cannot decode
(garbage, JSON ``null``, a tombstone) are dead-lettered with their reason and source and
counted, and the fall behind them on the same partition is handled."""

from __future__ import annotations

import time

import pytest

from adapters import kafka
from adapters.storage.postgres import Database
from kernel import keys
from kernel.contracts import DeviceEvent
from kernel.settings import Settings
from kernel.waiting import poll_until
from tests.adapters.dead_lettering import WITHIN_S, dead_letters, produce, worker
from tests.adapters.scenes import seed
from tests.support import scrape

pytestmark = pytest.mark.servers

__all__ = ["worker"]  # the dispatch worker fixture (tests.adapters.dead_lettering)


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
