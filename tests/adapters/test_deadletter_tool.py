"""``careknot deadletter list|show|replay`` against the real Kafka, Postgres and Redis: letters
parked as the workers and ingest park them, listed and shown; a fall a real worker parked, sent
back twice once the cause is gone, opens one incident; what cannot be sent as it was is refused
and nothing is sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable

import orjson
import pytest

from adapters import kafka
from adapters.metrics import DeadLetterMetrics
from adapters.storage.postgres import Database
from careknot.deadletter import REPLAY_HEADER, Letter, find, read_letters, records
from careknot.up import settings_env
from ingest.parse import dead_letter as ingest_dead_letter
from kernel import keys
from kernel.contracts import DeviceEvent
from kernel.errors import RejectedPayload
from kernel.settings import Settings
from kernel.waiting import poll_until
from streams.dead_letters import PAYLOAD_CHARS, DeadLetters
from streams.decoding import TOMBSTONE, UNDECODABLE, Refused
from streams.handling import POISON
from tests.adapters.dead_lettering import WITHIN_S, produce, worker
from tests.adapters.scenes import seed

pytestmark = pytest.mark.servers

__all__ = ["worker"]  # the dispatch worker fixture (tests.adapters.dead_lettering)


async def park(settings: Settings, topic: str, refused: list[Refused]) -> None:
    """Dead-letter values of the logical ``topic`` as a worker does."""
    letters = DeadLetters(settings, DeadLetterMetrics())
    await letters.start()
    try:
        await letters.park(topic, refused)
    finally:
        await letters.stop()


async def letters_where(
    settings: Settings, mine: Callable[[Letter], bool], wanted: int
) -> list[Letter]:
    """The letters ``mine`` picks, once there are ``wanted``."""

    async def found() -> list[Letter] | None:
        picked = [x for x in await read_letters(settings) if mine(x)]
        return picked if len(picked) >= wanted else None

    return await poll_until(found, WITHIN_S, f"{wanted} letters")


def tagged(tag: str) -> Callable[[Letter], bool]:
    return lambda x: tag in x.letter.payload or tag in x.letter.detail


async def careknot(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    """``careknot deadletter ARGV`` in the namespace of ``settings``."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "careknot.cli", "deadletter", *argv],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        text=True,
        timeout=WITHIN_S,
    )


async def replayed_values(settings: Settings, letter: Letter) -> list[tuple[bytes, bytes]]:
    """(key, value) of each record on the letter's source topic that says it replays it."""
    mark = f"{settings.keys.topic(keys.DEADLETTER)}:{letter.id}".encode()
    found = await records(settings, letter.letter.source)
    return [(r.key, r.value) for r in found if (REPLAY_HEADER, mark) in list(r.headers)]


async def test_list_and_show_say_what_was_refused_where_and_when(settings: Settings) -> None:
    tag = uuid.uuid4().hex
    cut = Refused(f'["{tag}", "{"x" * PAYLOAD_CHARS}"]'.encode(), UNDECODABLE, "too long")
    broken = Refused(f'{{"tag": "{tag}"'.encode(), UNDECODABLE, "EOF while parsing an object")
    await park(settings, keys.DEVICE_EVENTS, [cut, broken])
    await park(settings, keys.OFFER_ANSWERS, [Refused(f'["{tag}"]'.encode(), UNDECODABLE)])
    mine = await letters_where(settings, tagged(tag), 3)
    by_payload = {x.letter.payload: x for x in mine}
    whole = by_payload[broken.value.decode()]  # type: ignore[union-attr]
    (long,) = [x for x in mine if x.letter.truncated]

    listed = await careknot(settings, "list", "--reason", UNDECODABLE, "--source", "device-events")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert {str(whole.id), str(long.id)} <= set(rows)
    assert all(settings.keys.topic(keys.DEVICE_EVENTS) in row for row in rows.values())
    assert "EOF while parsing an object" in rows[str(whole.id)]
    assert rows[str(long.id)].endswith("[truncated]")
    assert not rows[str(whole.id)].endswith("]")

    latest = await careknot(settings, "list", "--limit", "1")
    assert len(latest.stdout.splitlines()) == 3  # the header, the latest letter, what is left out
    assert "older not shown" in latest.stdout

    shown = await careknot(settings, "show", str(whole.id))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {
        "letter": str(whole.id),
        **whole.letter.model_dump(mode="json"),
        "replays": [],
    }
    assert whole.letter.truncated is False
    missing = await careknot(settings, "show", "0:999999")
    assert (missing.returncode, missing.stdout.strip()) == (1, "0:999999: no such letter")


async def test_what_cannot_be_sent_as_it_was_is_refused_and_nothing_is_sent(
    settings: Settings,
) -> None:
    tag = uuid.uuid4().hex
    fall = f'{{"tag": "{tag}", "type": "fall", "pad": "{"x" * PAYLOAD_CHARS}"}}'.encode()
    await park(settings, keys.DEVICE_EVENTS, [Refused(fall, POISON, "handler failed")])
    await park(settings, keys.OFFER_ANSWERS, [Refused(None, TOMBSTONE, tag)])
    mqtt_topic = f"ck/{tag}/dev/d1/evt"
    at_the_edge = ingest_dead_letter(
        RejectedPayload("unknown_device", tag, topic=mqtt_topic),
        f'{{"tag": "{tag}"}}'.encode(),
        1.0,
    )
    before_the_field = {  # a letter from before the field, its payload as long as a cut one
        "reason": POISON,
        "detail": "handler failed",
        "source": settings.keys.topic(keys.DEVICE_EVENTS),
        "payload": f'{{"tag": "{tag}", "pad": "'.ljust(PAYLOAD_CHARS, "x"),
        "received_at": time.time(),
    }
    producer = kafka.Producer(settings)
    await producer.start()
    try:
        for letter in (at_the_edge.model_dump(), before_the_field):
            await producer.send_and_wait(keys.DEADLETTER, orjson.dumps(letter), key=POISON)
    finally:
        await producer.stop()
    mine = await letters_where(settings, tagged(tag), 4)

    replay = await careknot(settings, "replay", *(str(x.id) for x in mine))
    assert replay.returncode == 1
    said = {x.id: _line_of(replay.stdout, f"{x.id}: not replayed: ") for x in mine}
    assert sum("was cut short" in line for line in said.values()) == 2
    assert sum("tombstone" in line for line in said.values()) == 1
    assert sum(f"came from {mqtt_topic}" in line for line in said.values()) == 1
    letters = await read_letters(settings)
    for x in mine:
        assert find(letters, str(x.id)).replays == []
        if x.letter.source.startswith(settings.namespace):
            assert await replayed_values(settings, x) == []


def _line_of(text: str, start: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(start)]
    return line


async def test_a_fall_the_worker_parked_and_sent_back_twice_opens_one_incident(
    settings: Settings, db: Database, worker: Settings
) -> None:
    """The incident store refuses the device's incidents (a trigger raises), so the worker
    parks its fall as poison; once the trigger is gone the fall is sent back, twice."""
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
    value = fall.model_dump_json().encode()
    async with incidents_refused(db, w.device.id):
        await produce(settings, w.device.id, [value])
        (letter,) = await letters_where(settings, tagged(fall.event_id), 1)
    assert (letter.letter.reason, letter.letter.payload) == (POISON, value.decode())
    assert "the ward is closed" in letter.letter.detail
    assert await opened(db, fall.event_id) is None

    first = await careknot(settings, "replay", str(letter.id))
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.strip() == f"{letter.id}: sent again to {letter.letter.source}"
    await poll_until(lambda: opened(db, fall.event_id), WITHIN_S, "the fall's incident")
    second = await careknot(settings, "replay", str(letter.id))
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.strip().endswith("(replayed 1 times before)")

    # a later fall of the same device, on the same partition: handled after both replays
    later = fall.model_copy(update={"event_id": f"{w.device.id}:2", "seq": 2, "ts": now + 1})
    await produce(settings, w.device.id, [later.model_dump_json().encode()])
    await poll_until(lambda: joined(db, later.event_id), WITHIN_S, "the later fall joined")

    incidents = await db.pool.fetch("SELECT id FROM incidents WHERE patient_id = $1", w.patient.id)
    assert len(incidents) == 1
    steps = await db.pool.fetch(
        "SELECT kind, payload->>'source_event_id' AS source FROM events"
        " WHERE incident_id = $1 AND kind IN ('incident_opened', 'trigger_joined') ORDER BY seq",
        incidents[0]["id"],
    )
    assert [(s["kind"], s["source"]) for s in steps] == [
        ("incident_opened", fall.event_id),
        ("trigger_joined", later.event_id),
    ]
    assert len(find(await read_letters(settings), str(letter.id)).replays) == 2
    assert await replayed_values(settings, letter) == [(w.device.id.encode(), value)] * 2
    by_reason = await careknot(settings, "replay", "--reason", POISON)
    assert f"{letter.id}:" not in by_reason.stdout  # replayed already: not again


@contextlib.asynccontextmanager
async def incidents_refused(db: Database, device: str) -> AsyncIterator[None]:
    """Opening an incident for ``device`` fails inside Postgres (not an outage: poison)."""
    name = f"refuse_{device.replace('-', '_')}"
    await db.pool.execute(
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'the ward is closed'; END $$;"
        f" CREATE TRIGGER {name} BEFORE INSERT ON incidents FOR EACH ROW"
        f" WHEN (NEW.device_id = '{device}') EXECUTE FUNCTION {name}()"
    )
    try:
        yield
    finally:
        await db.pool.execute(f"DROP TRIGGER {name} ON incidents; DROP FUNCTION {name}()")


async def opened(db: Database, event_id: str) -> bool | None:
    found = await db.pool.fetchval("SELECT 1 FROM incidents WHERE source_event_id = $1", event_id)
    return True if found else None


async def joined(db: Database, event_id: str) -> bool | None:
    found = await db.pool.fetchval(
        "SELECT 1 FROM events WHERE kind = 'trigger_joined' AND payload->>'source_event_id' = $1",
        event_id,
    )
    return True if found else None
