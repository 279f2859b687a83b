"""The walking skeleton's journey, end to end on real servers, through MQTT and WebSockets.

``careknot up --simulate`` runs as a child process (the simulated Leeds city publishing all
along); the test is a fall detector, two caregivers' phones, a family and a dispatcher.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from adapters.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow
from kernel.settings import Settings
from tests.journey.harness import own_worker_ready, running_system
from tests.support import (
    Phone,
    free_port,
    http_get,
    is_type,
    processes_in,
    scrape,
    token,
    wait_for,
)

pytestmark = [pytest.mark.servers, pytest.mark.journey]

# Agencies and people unique to the run: MQTT topics are not namespaced, and another run on the
# same broker must not feed (or, through ingest's registry cache, hide) this run's caregivers.
RUN = secrets.token_hex(3)
AGENCY = f"journey-{RUN}"
HOME = (53.7760, -1.6010)  # a home in Farsley, west of the simulated city's centre
NEAR = (53.7768, -1.6002)  # ~100 m away
FAR = (53.7840, -1.5900)  # ~1.1 km away
OTHER_AGENCY = f"journey-other-{RUN}"
OFFER_WINDOW_S = 4.0
FLOOD_NICE = 3  # the floods' processes may be told to give up CPU priority


@pytest.fixture(scope="module")
def system(migrated: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """``careknot up --simulate`` on the session's servers; stopped with SIGINT at the end."""
    workdir = tmp_path_factory.mktemp("up")
    with running_system(
        migrated,
        workdir,
        simulate=True,
        offer_window_by_severity={1: OFFER_WINDOW_S},
        max_waves=3,
        flood_nice=FLOOD_NICE,
        worker_metrics_port=free_port(),
        dispatch_metrics_port=free_port(),
    ) as settings:
        yield settings


@pytest.fixture(scope="module")
async def ready(system: Settings) -> AsyncIterator[Settings]:
    """The system with the worker's partitions assigned and the journey's people registered."""
    await own_worker_ready(system)
    async with Database(system) as db:
        await db.upsert_agency(AGENCY, "Journey Care")
        await db.upsert_agency(OTHER_AGENCY, "Other Care")
        await db.upsert_caregivers(
            [
                CaregiverRow(f"j-near-{RUN}", AGENCY, "Nadia Near"),
                CaregiverRow(f"j-far-{RUN}", AGENCY, "Fiona Far"),
                CaregiverRow(f"j-other-{RUN}", OTHER_AGENCY, "Olga Other"),
            ]
        )
        await db.upsert_patients([PatientRow(f"j-pat-{RUN}", AGENCY, "Pat Journey", *HOME)])
        await db.upsert_devices(
            [
                DeviceRow(f"j-fd-{RUN}", AGENCY, f"j-pat-{RUN}", "fall_detector"),
                DeviceRow(f"o-fd-{RUN}", OTHER_AGENCY, f"j-pat-{RUN}", "fall_detector"),
            ]
        )
    yield system


async def _publish(settings: Settings, topic: str, payload: Any, qos: int = 1) -> None:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as client:
        await client.publish(topic, body, qos=qos)


_last_tst: dict[str, int] = {}


async def _locate(settings: Settings, caregiver: str, agency: str, at: tuple[float, float]) -> None:
    """A fresh fix; its ``tst`` (whole seconds) is later than her previous one, since a fix
    with the same ``tst`` is the same fix and rightly changes nothing."""
    tst = max(int(time.time()), _last_tst.get(caregiver, 0) + 1)
    _last_tst[caregiver] = tst
    fix = {"_type": "location", "lat": at[0], "lon": at[1], "tst": tst, "acc": 8}
    await _publish(settings, f"ck/{agency}/cg/{caregiver}/loc", fix)


def _fall(seq: int) -> dict[str, Any]:
    return {"type": "fall", "ts": time.time(), "seq": seq, "data": {}}


async def test_fall_is_offered_declined_reoffered_accepted_and_seen_by_family(
    ready: Settings,
) -> None:
    s = ready
    near = await Phone.open(s, token(s, "caregiver", f"j-near-{RUN}", AGENCY))
    far = await Phone.open(s, token(s, "caregiver", f"j-far-{RUN}", AGENCY))
    other = await Phone.open(s, token(s, "caregiver", f"j-other-{RUN}", OTHER_AGENCY))
    family = await Phone.open(s, token(s, "family", f"j-fam-{RUN}", AGENCY, [f"j-pat-{RUN}"]))
    console = await Phone.open(s, token(s, "dispatcher", f"j-desk-{RUN}", AGENCY))

    await _locate(s, f"j-far-{RUN}", AGENCY, FAR)
    await _locate(s, f"j-near-{RUN}", AGENCY, NEAR)
    await _locate(s, f"j-other-{RUN}", OTHER_AGENCY, HOME)  # right there, but another agency's
    located = {f"j-far-{RUN}", f"j-near-{RUN}"}  # in either order: they ride different partitions
    while located:
        located.discard((await console.expect(is_type("location")))["caregiver_id"])

    await _publish(s, f"ck/{AGENCY}/dev/j-fd-{RUN}/evt", _fall(1))
    offer = await near.expect(is_type("offer"))
    assert offer["incident"]["kind"] == "fall"
    assert offer["incident"]["distance_m"] < 200
    assert isinstance(offer["seq"], int)
    incident_id = offer["incident"]["incident_id"]

    # Someone else's offer cannot be answered.
    await far.send({"type": "accept", "offer_id": offer["offer_id"]})
    err = await far.expect(is_type("error"))
    assert err["reason"] == "not_your_offer"

    await near.send({"type": "decline", "offer_id": offer["offer_id"], "reason": "driving"})
    second = await far.expect(is_type("offer"))
    assert second["incident"]["incident_id"] == incident_id
    await far.send({"type": "accept", "offer_id": second["offer_id"]})
    result = await far.expect(is_type("offer_result", offer_id=second["offer_id"]))
    assert result["outcome"] == "assigned"

    seen = await family.expect(is_type("incident", incident_id=incident_id, state="assigned"))
    assert seen["assignee_name"] == "Fiona Far"
    assert 0 < seen["eta_s"] < 600
    assert (seen["lat"], seen["lon"]) == (round(HOME[0], 3), round(HOME[1], 3))  # approximate
    await console.expect(is_type("incident", incident_id=incident_id, state="assigned"))
    assert not [f for f in other.seen if f.get("type") == "offer"]

    kinds = await _timeline(s, incident_id)
    assert kinds == [
        "incident_opened",
        "offer_sent",
        "offer_declined",
        "offer_sent",
        "offer_accepted",
        "incident_assigned",
    ]
    for phone in (near, far, other, family, console):
        await phone.close()


async def test_unanswered_offer_expires_and_the_incident_escalates(ready: Settings) -> None:
    s = ready
    near = await Phone.open(s, token(s, "caregiver", f"j-near-{RUN}", AGENCY))
    console = await Phone.open(s, token(s, "dispatcher", f"j-desk2-{RUN}", AGENCY))
    await _locate(s, f"j-near-{RUN}", AGENCY, NEAR)
    await console.expect(is_type("location", caregiver_id=f"j-near-{RUN}"))

    await _publish(s, f"ck/{AGENCY}/dev/j-fd-{RUN}/evt", _fall(2))
    offer = await near.expect(is_type("offer"))
    expired = await near.expect(
        is_type("offer_result", offer_id=offer["offer_id"]), within=OFFER_WINDOW_S + 10
    )
    assert expired["outcome"] == "expired"
    incident_id = offer["incident"]["incident_id"]
    await console.expect(is_type("incident", incident_id=incident_id, state="escalated"))
    assert (await _timeline(s, incident_id))[-2:] == ["offer_expired", "incident_escalated"]
    await near.close()
    await console.close()


async def test_bad_input_is_dead_lettered_with_reasons_and_the_stream_goes_on(
    ready: Settings,
) -> None:
    s = ready
    consumer = AIOKafkaConsumer(
        s.keys.topic("deadletter"),
        bootstrap_servers=s.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        await _publish(s, f"ck/{AGENCY}/cg/j-near-{RUN}/loc", b"{not json")
        await _publish(s, f"ck/{AGENCY}/cg/j-near-{RUN}/loc", {"lat": 91.0, "lon": 0.0, "tst": 1})
        await _publish(s, f"ck/{AGENCY}/dev/o-fd-{RUN}/evt", _fall(3))  # another agency's device
        await _publish(s, f"ck/{AGENCY}/dev/nobody/evt", _fall(4))
        wanted = {"malformed_json", "invalid_fields", "device_agency_mismatch", "unknown_device"}
        reasons = await _dead_letter_reasons(consumer, wanted)
        assert wanted <= reasons
    finally:
        await consumer.stop()
    # ...and the stream still flows: a good fix after the bad ones reaches the dispatcher.
    console = await Phone.open(s, token(s, "dispatcher", f"j-desk3-{RUN}", AGENCY))
    await _locate(s, f"j-near-{RUN}", AGENCY, NEAR)
    await console.expect(is_type("location", caregiver_id=f"j-near-{RUN}"))
    await console.close()


async def _dead_letter_reasons(consumer: AIOKafkaConsumer, wanted: set[str]) -> set[str]:
    reasons: set[str] = set()
    async with asyncio.timeout(20):
        while not wanted <= reasons:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    letter = json.loads(record.value)
                    if letter["source"].startswith(f"ck/{AGENCY}/"):
                        reasons.add(letter["reason"])
    return reasons


async def _timeline(settings: Settings, incident_id: str) -> list[str]:
    async with Database(settings) as db:
        return [e.kind for e in await db.incident_events(incident_id)]


def _niceness(namespace: str) -> dict[str, int]:
    """Each worker's and ingest's part (``--role``, ``--streams``) and its niceness (field 19
    of /proc/PID/stat)."""
    out = {}
    for pid in processes_in(namespace):
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        for verb, option in ((b"worker", b"--role"), (b"ingest", b"--streams")):
            if verb in words and option in words:
                part = words[words.index(option) + 1].decode()
                stat = Path(f"/proc/{pid}/stat").read_text()
                out[part] = int(stat[stat.rindex(")") + 2 :].split()[16])
    return out


async def test_the_floods_processes_give_up_the_cpu_priority_they_are_told(
    ready: Settings,
) -> None:
    assert _niceness(ready.namespace) == {
        "dispatch": 0,
        "emergencies": 0,
        "fixes": FLOOD_NICE,
        "positions": FLOOD_NICE,
        "devices": FLOOD_NICE,
        "telemetry": FLOOD_NICE,
    }


async def test_the_dispatch_worker_serves_the_state_of_its_copy_of_the_index(
    ready: Settings,
) -> None:
    """Made, ready, following the city's fixes, and counting its searches by outcome."""

    def value(text: str, name: str) -> float | None:
        found = [line for line in text.splitlines() if line.startswith(name + " ")]
        return float(found[0].rsplit(" ", 1)[1]) if found else None

    async def following() -> str | None:
        text = await scrape(ready.dispatch_metrics_port)
        ready_now = value(text, "careknot_live_copy_ready") == 1.0
        return (
            text if ready_now and (value(text, "careknot_live_copy_caregivers") or 0) > 0 else None
        )

    text = await wait_for(following, 30, "the dispatch worker's copy following the city")
    assert (value(text, "careknot_live_copy_made_total") or 0) >= 1
    assert (value(text, "careknot_live_copy_change") or 0) > 0
    assert value(text, 'careknot_live_copy_searches_total{outcome="answered"}') is not None


async def test_the_fixes_worker_serves_its_counts(ready: Settings) -> None:
    """Two workers run; the one that screens fixes serves their counts (the other binds nothing,
    so the port is never lost to it)."""

    async def accepted() -> float | None:
        text = await scrape(ready.worker_metrics_port)
        for line in text.splitlines():
            if line.startswith('careknot_worker_fixes_total{reason="",verdict="accept"}'):
                return float(line.rsplit(" ", 1)[1]) or None
        return None

    assert await wait_for(accepted, 30, "accepted fixes counted") > 0


async def test_both_workers_say_their_servers_answer(ready: Settings) -> None:
    for port in (ready.worker_metrics_port, ready.dispatch_metrics_port):
        status, body = await http_get(port, "/healthz")
        assert (status, orjson.loads(body)) == (
            200,
            {"ok": True, "postgres": True, "redis": True, "kafka": True, "down": []},
        )
