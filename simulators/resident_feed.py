"""The demo city's residents (``simulators.households``) against the servers: each home's last
:data:`~simulators.households.HISTORY_DAYS` days written to Postgres's ``device_events`` as the
devices worker keeps them, then its events published on MQTT as they happen.

The history is seeded once: a home's events after the latest of its routine's events already
kept (a previous run's, seeded or live) up to the start, so running the city again neither
doubles a history nor gives one moment two different lives; a seeded event is named apart from
what ingest names a live one (``seed:{device}:{seq}:{ts ms}``), and kept once should seeding be
cut short and run again. The live events go out at QoS 1 each second; one that could not be sent
within :data:`LATE_S` of its time (the broker away) is dropped, as ingest would refuse it
(``too_old``, 300 s).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import aiomqtt
import orjson

from adapters.mqtt.dynsec import Kind
from kernel.backoff import Backoff
from kernel.contracts import ACTIVITY_EVENT_TYPES
from kernel.settings import Settings
from simulators.households import (
    HISTORY_DAYS,
    HomeEvent,
    Household,
    plan_fall,
    seeded_event,
)
from simulators.links import Links, Publishing, provision
from simulators.residents import ZONE, home_devices

log = logging.getLogger(__name__)

LATE_S = 240.0
TICK_S = 1.0
BATCH = 5000
DAY_S = 86_400.0


async def seed_history(
    settings: Settings,
    households: Sequence[Household],
    agency: str,
    since: float,
    until: float,
) -> int:
    """Register each home's ambient sensors with its patient and keep its events in
    [``since``, ``until``) after the latest of its routine's events kept; how many were new.

    A home's sensors are registered just before its events are kept (the keeper of routines
    watches a home from its first ambient sensor on, and fits its model at once on what it
    finds): a home is not watched while its history is still to come."""
    from adapters.storage.device_history import DeviceHistory
    from adapters.storage.postgres import Database, DeviceRow

    kept = 0
    async with Database(settings) as db:
        history = DeviceHistory(db)
        patients = [h.patient_id for h in households]
        latest = await history.latest(patients, since, sorted(ACTIVITY_EVENT_TYPES))
        for h in households:
            devices = home_devices(h.patient_id)
            await db.upsert_devices(
                [DeviceRow(d, agency, h.patient_id, kind) for d, kind in devices.items()]
            )
            start = max(since, latest.get(h.patient_id, -math.inf) + 0.0005)
            events = h.between(start, until)
            for i in range(0, len(events), BATCH):
                kept += await history.keep([seeded_event(e, agency) for e in events[i : i + BATCH]])
            await asyncio.sleep(0)
    return kept


async def publish_due(
    mq: Publishing,
    households: Sequence[Household],
    agency: str,
    start: float,
    end: float,
    *,
    oldest: float = -math.inf,
) -> tuple[int, int]:
    """Publish every home's events in [``start``, ``end``) in time order (each device's in the
    order it counts them), those before ``oldest`` dropped: (published, dropped)."""
    due: list[HomeEvent] = []
    for h in households:
        made = h.chapters_made
        due += h.between(start, end)
        if h.chapters_made != made:
            await asyncio.sleep(0)  # a chapter made (~10 ms): let the city's publishers run
    due.sort(key=lambda e: e.ts)
    dropped = 0
    for e in due:
        if e.ts < oldest:
            dropped += 1
            continue
        await mq.publish(e.topic(agency), orjson.dumps(e.body()), qos=1)
    return len(due) - dropped, dropped


async def live(
    settings: Settings,
    households: Sequence[Household],
    agency: str,
    start: float,
    *,
    seed: int,
    fall_after_min: float | None = None,
    links: Links | None = None,
) -> None:
    """The residents for ever: their history seeded up to ``start`` (and up to the moment it
    is done), the asked-for fall planned, then their events published as they happen,
    reconnecting to the broker when it goes away. Their sensors are given credentials of their
    own as their history is seeded, where ``links`` publishes each device on its own
    connection (the broker is ours: ``simulators.links``)."""
    links = links or Links(settings)
    sensors: list[tuple[Kind, str]] = [
        ("dev", d) for h in households for d in home_devices(h.patient_id)
    ]
    given = asyncio.create_task(provision(settings, agency, sensors)) if links.own else None
    kept = await seed_history(settings, households, agency, start - HISTORY_DAYS * DAY_S, start)
    caught_up = time.time()
    kept += await seed_history(settings, households, agency, start, caught_up)
    log.info("residents: %d homes, %d events of their history seeded", len(households), kept)
    if fall_after_min is not None:
        after = start + fall_after_min * 60.0
        fall = await asyncio.to_thread(plan_fall, households, max(after, caught_up), seed)
        if fall is None:
            log.warning("residents: nobody up and about within two days to fall")
        else:
            log.info(
                "residents: the resident of %s falls at %s and lies silent until %s",
                fall.patient_id,
                _local(fall.at),
                _local(fall.help_at),
            )
    if given is not None:
        links.add(await given)
    cursor, backoff = caught_up, Backoff()
    while True:
        try:
            async with links.connected() as mq:
                backoff.reset()
                while True:
                    now = time.time()
                    _, dropped = await publish_due(
                        mq, households, agency, cursor, now, oldest=now - LATE_S
                    )
                    if dropped:
                        log.warning("residents: %d events too late to send, dropped", dropped)
                    cursor = now
                    await asyncio.sleep(TICK_S)
        except aiomqtt.MqttError as exc:
            delay = backoff.next()
            log.warning("MQTT (residents): %s; retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)


def _local(t: float) -> str:
    return datetime.fromtimestamp(t, ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M:%S %Z")
