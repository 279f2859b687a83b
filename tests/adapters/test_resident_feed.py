"""The demo city's residents against the real servers: a home's due events published on
Mosquitto with their devices' topics and bodies (those too late to send dropped), and its
history seeded in Postgres once, however often the city starts, after what is already kept."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import orjson
import pytest

from adapters.storage.device_history import DeviceHistory
from adapters.storage.postgres import Database, PatientRow
from ingest.parse import Limits, parse_device_event, route
from kernel.settings import Settings
from simulators.households import SEEDED_PREFIX, Household, seeded_event
from simulators.resident_feed import publish_due, seed_history
from simulators.residents import ZONE, home_devices

pytestmark = pytest.mark.servers

RUN = secrets.token_hex(3)
AGENCY = f"res-{RUN}"
PATIENT = f"res-{RUN}-p005"
HOME = 5
SEED = 7
MORNING = datetime(2026, 12, 4, 8, 0, tzinfo=ZoneInfo(ZONE)).timestamp()
H = 3600.0
DAY = 86_400.0


def household() -> Household:
    return Household(HOME, PATIENT, SEED)


async def test_the_publisher_sends_a_homes_due_events_with_their_topics_and_bodies(
    settings: Settings,
) -> None:
    start, end = MORNING, MORNING + 4 * H
    expected = household().between(start, end)
    oldest = expected[len(expected) // 3].ts  # the first third too late to send
    sent = [e for e in expected if e.ts >= oldest]
    assert len(sent) > 30
    marker = f"ck/{AGENCY}/dev/marker/evt"
    received: dict[str, list[dict[str, Any]]] = defaultdict(list)
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as sub:
        await sub.subscribe(f"ck/{AGENCY}/dev/+/evt", qos=1)
        async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as pub:
            counts = await publish_due(pub, [household()], AGENCY, start, end, oldest=oldest)
            await pub.publish(marker, b"{}", qos=1)
        async with asyncio.timeout(30):
            async for message in sub.messages:
                if message.topic.value == marker:
                    break
                received[message.topic.value].append(orjson.loads(bytes(message.payload)))
    assert counts == (len(sent), len(expected) - len(sent))
    by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in sent:
        by_topic[e.topic(AGENCY)].append(e.body())
    assert dict(received) == dict(by_topic)
    assert len(by_topic) >= 4
    assert set(by_topic) <= {f"ck/{AGENCY}/dev/{d}/evt" for d in home_devices(PATIENT)}
    body = received[f"ck/{AGENCY}/dev/{PATIENT}-pir-kitchen/evt"][0]
    assert set(body) == {"type", "ts", "seq", "data"} and set(body["data"]) == {"room"}


async def register(db: Database) -> None:
    await db.upsert_agency(AGENCY, "Resident Care")
    await db.upsert_patients([PatientRow(PATIENT, AGENCY, "Edna Routine", 53.8, -1.55)])


async def test_a_history_is_seeded_once_and_after_what_is_kept(
    settings: Settings, db: Database
) -> None:
    await register(db)
    history = DeviceHistory(db)
    since, until = MORNING - 2 * DAY, MORNING
    expected = household().between(since, until)
    assert await seed_history(settings, [household()], AGENCY, since, until) == len(expected)
    assert await seed_history(settings, [household()], AGENCY, since, until) == 0  # again
    kept = await history.of_patient(PATIENT, since, until)
    assert sorted(k.event_id for k in kept) == sorted(
        seeded_event(e, AGENCY).event_id for e in expected
    )
    assert all(k.event_id.startswith(SEEDED_PREFIX) and k.patient_id == PATIENT for k in kept)
    for device, kind in home_devices(PATIENT).items():  # registered with her history
        row = await db.device(device)
        assert row is not None and (row.agency_id, row.patient_id, row.kind) == (
            AGENCY,
            PATIENT,
            kind,
        )

    # the city ran live for an hour (ingest kept those), stopped, and starts again later
    live = household().between(until, until + H)
    parsed = [
        parse_device_event(
            route(e.topic(AGENCY)), e.topic(AGENCY), orjson.dumps(e.body()), e.ts, Limits()
        )
        for e in live
    ]
    assert await history.keep(parsed) == len(live) > 0
    later = until + 5 * H
    gap = household().between(live[-1].ts + 0.001, later)
    assert await seed_history(settings, [household()], AGENCY, since + DAY, later) == len(gap)
    everything = await history.of_patient(PATIENT, since, later)
    assert len(everything) == len(expected) + len(live) + len(gap)
    named = {(k.device_id, k.ts) for k in everything}
    assert len(named) == len(everything)  # no event twice, seeded or live
    assert await history.latest([PATIENT, "nobody"], since) == {PATIENT: gap[-1].ts}
