"""A visit, end to end on real servers: a caregiver's phone publishes her fixes over MQTT as she
drives to a patient's home, stays a moment and drives off; the family's WebSocket sees
``en_route``, ``arrived`` and ``left`` in that order, the agency's dispatchers get the early
departure as an ``alert``, and the visit carries its check-in and check-out evidence.

``careknot up`` runs as a child process (without the simulated city: this test is the city),
with short dwell times so the visit takes seconds.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterator

import aiomqtt
import pytest
import redis.asyncio as aioredis

from adapters.storage.postgres import CaregiverRow, Database, PatientRow
from adapters.storage.visit_store import VisitStore
from kernel.settings import Settings
from tests.journey.driving import Drive
from tests.journey.harness import own_worker_ready, running_system
from tests.support import Phone, is_type, token
from visits.rules import Visit

pytestmark = [pytest.mark.servers, pytest.mark.journey]

RUN = secrets.token_hex(3)
AGENCY = f"visit-journey-{RUN}"  # unique to the run: MQTT topics are shared between runs
CAREGIVER, PATIENT, VISIT = f"vj-cg-{RUN}", f"vj-pat-{RUN}", f"vj-visit-{RUN}"
HOME = (53.7760, -1.6010)
DWELL_IN_S, DWELL_OUT_S = 2.0, 3.0


@pytest.fixture(scope="module")
def system(migrated: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    workdir = tmp_path_factory.mktemp("up-visits")
    with running_system(
        migrated,
        workdir,
        simulate=False,
        visit_dwell_in_s=DWELL_IN_S,
        visit_dwell_out_s=DWELL_OUT_S,
    ) as settings:
        yield settings


@pytest.fixture(scope="module")
async def ready(system: Settings) -> AsyncIterator[Settings]:
    """The worker's partitions assigned; the caregiver, the patient and her visit registered."""
    await own_worker_ready(system)
    r = aioredis.Redis.from_url(system.redis_url)
    async with Database(system) as db:
        await db.upsert_agency(AGENCY, "Visit Journey Care")
        await db.upsert_caregivers([CaregiverRow(CAREGIVER, AGENCY, "Vera Visit")])
        await db.upsert_patients([PatientRow(PATIENT, AGENCY, "Pat Visit", *HOME)])
        store = VisitStore(db, r, system)
        start = time.time() + 600  # she arrives early for it: it is her next visit
        visit = Visit(VISIT, AGENCY, PATIENT, CAREGIVER, start, start + 1800, *HOME, ("lunch",))
        await store.add_visits([visit])
        await store.set_fence(PATIENT, radius_m=100.0)
    await r.aclose()
    yield system


async def test_family_sees_en_route_arrived_and_left_in_order(ready: Settings) -> None:
    s = ready
    family = await Phone.open(s, token(s, "family", "vj-fam", AGENCY, [PATIENT]))
    desk = await Phone.open(s, token(s, "dispatcher", "vj-desk", AGENCY))
    async with aiomqtt.Client(s.mqtt_host, s.mqtt_port) as client:
        drive = Drive(client, f"ck/{AGENCY}/cg/{CAREGIVER}/loc", HOME)
        await drive.at(800.0)
        en_route = await family.expect(is_type("visit_status", visit_id=VISIT, state="en_route"))
        assert en_route["patient_id"] == PATIENT and 0 < en_route["eta_s"] < 600
        await drive.path(780.0, 0.0)  # drives in
        for _ in range(int(DWELL_IN_S) + 3):
            await drive.at(5.0)  # parked at the door
        await drive.path(20.0, 400.0)  # and off again
        for _ in range(int(DWELL_OUT_S) + 3):
            await drive.at(400.0)
    arrived = await family.expect(is_type("visit_status", visit_id=VISIT, state="arrived"))
    left = await family.expect(is_type("visit_status", visit_id=VISIT, state="left"))
    assert arrived["at"] < left["at"]
    alert = await desk.expect(
        lambda f: is_type("alert", state="raised")(f) and f.get("kind") == "early_departure"
    )
    assert alert["visit_id"] == VISIT and alert["patient_id"] == PATIENT

    async with Database(s) as db:
        record = await VisitStore(db, aioredis.Redis.from_url(s.redis_url), s).record(VISIT)
    assert record is not None and record.state == "left"
    assert record.check_in is not None and record.check_in.distance_m is not None
    assert record.check_in.distance_m < 100 and record.check_in.source == "gps"
    assert record.check_out is not None and record.check_out.at > record.check_in.at
    await family.close()
    await desk.close()
