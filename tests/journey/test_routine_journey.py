"""A resident stops moving one afternoon, end to end on real servers. For 20 days she moved
every 10 minutes of her afternoons; today her sensors have said nothing for three hours and no
device raised anything (silence is the signal). The devices worker, retrained on her days,
raises an ``inactivity`` alarm that reaches the dispatcher's console with its explanation; the
dispatcher opens an incident from it and the caregiver near her home is offered it and accepts.
Then her kitchen sensor fires, through MQTT and ingest to her home's history, and the alarm
clears. A second resident, still, is left alone: the monitor itself opens her incident once
her inactivity has persisted.

``careknot up`` runs as a child process without the simulated city, in a namespace of its own
(its worker watches every home in the record: only hers and Iris's); the homes are registered
once the dispatcher and the caregivers are on, as a home is while the system runs, and are
scored every second. Each home's time zone is one where it is about 14:00 now, so the story is
her afternoon whenever it runs.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiomqtt
import orjson
import pytest

from adapters.storage.access_log import AccessLog, Read
from adapters.storage.postgres import CaregiverRow, Database, PatientRow
from adapters.storage.routines import RoutineStore
from kernel.settings import Settings
from tests.journey.harness import own_namespace, own_worker_ready, running_system
from tests.routine_days import devices, write_days, zone_at
from tests.support import Phone, free_port, is_type, scrape, token, wait_for

pytestmark = [pytest.mark.servers, pytest.mark.journey]

RUN = secrets.token_hex(3)
AGENCY = f"routine-journey-{RUN}"
ROSE, IRIS = f"rj-rose-{RUN}", f"rj-iris-{RUN}"
CAREGIVER, SECOND = f"rj-cg-{RUN}", f"rj-cg2-{RUN}"
HOME = (53.7760, -1.6010)
NEAR = (53.7768, -1.6002)  # ~100 m away
STILL_S = 3 * 3600.0
PERSISTS_S = 15.0


@pytest.fixture(scope="module")
async def own(migrated: Settings) -> AsyncIterator[Settings]:
    async with own_namespace(migrated) as settings:
        yield settings


@pytest.fixture(scope="module")
async def agency(own: Settings) -> None:
    """The agency and its two caregivers, registered before the system starts."""
    async with Database(own) as db:
        await db.upsert_agency(AGENCY, "Routine Journey Care")
        await db.upsert_caregivers(
            [CaregiverRow(CAREGIVER, AGENCY, "Cara Near"), CaregiverRow(SECOND, AGENCY, "Nell")]
        )


@pytest.fixture(scope="module")
def system(
    own: Settings, agency: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    workdir = tmp_path_factory.mktemp("up-routines")
    with running_system(
        own,
        workdir,
        simulate=False,
        routine_tick_s=1.0,
        routine_homes_read_s=1.0,
        routine_incident_after_s=PERSISTS_S,
        devices_metrics_port=free_port(),
    ) as settings:
        yield settings


@pytest.fixture(scope="module")
async def ready(system: Settings) -> AsyncIterator[Settings]:
    await own_worker_ready(system)
    yield system


@pytest.fixture(scope="module")
async def phones(ready: Settings) -> AsyncIterator[tuple[Phone, Phone, Phone]]:
    """The dispatcher's console and the two caregivers' phones, connected, both caregivers
    located near the homes (nothing of the homes is in the record yet)."""
    s = ready
    desk = await Phone.open(s, token(s, "dispatcher", f"rj-desk-{RUN}", AGENCY))
    carer = await Phone.open(s, token(s, "caregiver", CAREGIVER, AGENCY))
    nell = await Phone.open(s, token(s, "caregiver", SECOND, AGENCY))
    tst = int(time.time())
    for caregiver in (CAREGIVER, SECOND):
        fix = {"_type": "location", "lat": NEAR[0], "lon": NEAR[1], "tst": tst, "acc": 8}
        await publish(s, f"ck/{AGENCY}/cg/{caregiver}/loc", fix)
    located = {CAREGIVER, SECOND}  # in either order: they ride different partitions
    while located:
        located.discard((await desk.expect(is_type("location")))["caregiver_id"])
    yield desk, carer, nell
    for phone in (desk, carer, nell):
        await phone.close()


@pytest.fixture(scope="module")
async def residents(own: Settings, phones: tuple[Phone, Phone, Phone]) -> str:
    """Two residents with 20 days of history each and nothing since three hours ago, registered
    while the system runs and its people are on (the watch reads new homes every second, their
    history from the record); their homes' time zone, where it is about 14:00."""
    now = time.time()
    zone = zone_at(14, now)
    async with Database(own) as db:
        for patient, name in ((ROSE, "Rose Still"), (IRIS, "Iris Still")):
            await db.upsert_patients([PatientRow(patient, AGENCY, name, *HOME, zone)])
            await db.upsert_devices(devices(AGENCY, patient))
            await write_days(db, AGENCY, patient, zone, 20, now - STILL_S)
    return zone


async def publish(settings: Settings, topic: str, payload: dict[str, Any]) -> None:
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as client:
        await client.publish(topic, orjson.dumps(payload), qos=1)


async def seen_or_expect(phone: Phone, match: Any, within: float = 30.0) -> dict[str, Any]:
    """A frame that came already, or the next to come."""
    for frame in phone.seen:
        if match(frame):
            return frame
    return await phone.expect(match, within=within)


def inactivity(patient: str, status: str) -> Any:
    def match(frame: dict[str, Any]) -> bool:
        return is_type("alarm", patient_id=patient, status=status)(frame) and (
            frame["kind"] == "inactivity"
        )

    return match


async def test_a_still_afternoon_becomes_an_incident_a_caregiver_takes(
    ready: Settings, phones: tuple[Phone, Phone, Phone], residents: str
) -> None:
    s = ready
    desk, carer, nell = phones
    alarm = await seen_or_expect(desk, inactivity(ROSE, "active_unack"), within=60)
    assert alarm["source"] == f"routine:{ROSE}"
    assert alarm["detail"].startswith("no movement since ")
    assert "of the last 20 days she moved within" in alarm["detail"]

    await desk.send({"type": "open_incident", "alarm_id": alarm["alarm_id"]})
    ack = await desk.expect(is_type("ack", command="open_incident"))
    result = await desk.expect(is_type("command_result", command_id=ack["command_id"]))
    assert result["outcome"] == "done"
    offer = await carer.expect(is_type("offer"))
    assert offer["incident"]["kind"] == "inactivity"
    assert offer["incident"]["distance_m"] < 200
    await carer.send({"type": "accept", "offer_id": offer["offer_id"]})
    won = await carer.expect(is_type("offer_result", offer_id=offer["offer_id"]))
    assert won["outcome"] == "assigned"
    incident_id = offer["incident"]["incident_id"]
    await seen_or_expect(desk, is_type("incident", incident_id=incident_id, state="assigned"))

    # she moves: her kitchen sensor, through MQTT, ingest and her home's history
    moved = {"type": "motion", "ts": time.time(), "seq": 100_000, "data": {"room": "kitchen"}}
    await publish(s, f"ck/{AGENCY}/dev/{ROSE}-pir-kitchen/evt", moved)
    cleared = await seen_or_expect(
        desk, is_type("alarm", alarm_id=alarm["alarm_id"], status="cleared_ack")
    )
    assert cleared["acknowledged_by"] == f"dispatcher:rj-desk-{RUN}"

    # the other resident, left alone: her inactivity persists and the monitor asks itself;
    # the first caregiver is busy with Rose, so the second is offered Iris
    iris = await seen_or_expect(desk, inactivity(IRIS, "active_unack"))
    second = await seen_or_expect(
        nell,
        lambda f: is_type("offer")(f) and f["incident"]["incident_id"] != incident_id,
        within=PERSISTS_S + 30,
    )
    assert second["incident"]["kind"] == "inactivity"
    async with Database(s) as db:
        # (her last sensor may have been the bathroom's: a long stay there is told too)
        (episode,) = [e for e in await RoutineStore(db).episodes(IRIS) if e.kind == "inactivity"]
        (version,) = await RoutineStore(db).versions(IRIS)
    assert episode.alarm_id == iris["alarm_id"] and episode.incident_asked
    assert version.days == 20 and version.window_to <= iris["raised_at"]


async def test_the_devices_worker_serves_the_counts_of_its_watch(
    ready: Settings, residents: str
) -> None:
    async def counted() -> dict[str, float] | None:
        counts = {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in (await scrape(ready.devices_metrics_port)).splitlines()
            if line.startswith("careknot_routine_")
        }
        raised = counts.get('careknot_routine_alarms_raised_total{kind="inactivity"}', 0)
        return counts if raised >= 2 else None

    counts = await wait_for(counted, 60, "both residents' inactivity alarms counted")
    assert counts["careknot_routine_homes"] == 2  # Rose's and Iris's: its namespace is its own
    assert counts["careknot_routine_retrainings_total"] >= 2
    assert counts["careknot_routine_scorings_total"] > counts["careknot_routine_homes"]


async def test_who_read_what_is_kept_by_the_devices_worker(ready: Settings) -> None:
    s, reader = ready, f"rj-audit-{RUN}"
    desk = await Phone.open(s, token(s, "dispatcher", reader, AGENCY))
    await desk.close()

    async def kept() -> list[Read] | None:
        async with Database(s) as db:
            reads = await AccessLog(db).of_patient(AGENCY, ROSE)
        return [r for r in reads if r.subject == reader] or None

    (read,) = await wait_for(kept, 30, "the dispatcher's read in the access log")
    assert (read.role, read.recipient, read.via, read.what) == (
        "dispatcher",
        f"agency:{AGENCY}",
        "gateway",
        "connected",
    )
