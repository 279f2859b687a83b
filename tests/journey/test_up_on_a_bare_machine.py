"""``careknot up --simulate`` on a machine where nothing answers, as the README runs it.

Every server is configured on a free loopback port where nothing listens, so ``careknot up``
starts its own MQTT broker, Redis, Postgres and Kafka under its default servers folder,
``.careknot/servers`` relative to the folder it runs from (not the project's). A fall detector
then reports a fall and the nearest caregiver's phone is offered the incident.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import orjson
import pytest

from adapters.mqtt.access import access_of
from adapters.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow
from careknot.running import RunningSystem, worker_ready
from careknot.servers.embedded import dynsec_plugin
from kernel.settings import Settings
from tests.journey.harness import READY_WITHIN_S
from tests.support import Phone, free_port, is_type, processes_in, token, wait_for

pytestmark = [pytest.mark.servers, pytest.mark.journey]

RUN = secrets.token_hex(3)
NAMESPACE = f"bare{RUN}"
AGENCY = f"bare-{RUN}"
CAREGIVER, PATIENT, DEVICE = f"bare-cg-{RUN}", f"bare-pat-{RUN}", f"bare-fd-{RUN}"
HOME = (53.8008, -1.5491)  # in the simulated city
NEAR = (53.8016, -1.5480)  # ~110 m away
SERVERS = Path(".careknot/servers")  # careknot up's default, relative to where it runs
INGESTS = 3  # careknot up runs an ingest of positions, one of device events, one of telemetry


@pytest.fixture(scope="module")
def nowhere() -> Settings:
    """Settings naming servers where nothing answers: a free loopback port each."""
    return Settings(
        namespace=NAMESPACE,
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        postgres_dsn=f"postgresql://postgres@127.0.0.1:{free_port()}/careknot",
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        gateway_port=free_port(),
        api_port=free_port(),
        ingest_metrics_port=0,
        emergency_ingest_metrics_port=0,
        telemetry_ingest_metrics_port=0,
        worker_metrics_port=0,
        dispatch_metrics_port=0,
    )


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[Path]:
    """A folder other than the project's for ``careknot up`` to run from, which anyone may
    enter, as a clone usually is: Postgres, run as an unprivileged user when the tests run as
    root, then keeps its data in the servers folder there."""
    with tempfile.TemporaryDirectory(prefix="careknot-bare-") as folder:
        os.chmod(folder, 0o755)
        yield Path(folder)


@pytest.fixture(scope="module")
async def system(nowhere: Settings, elsewhere: Path) -> AsyncIterator[Settings]:
    """``careknot up --simulate`` run from ``elsewhere``, its services started; yields the
    settings it resolved (the servers it started). Stopped with SIGINT; it must stop cleanly
    and leave no process behind."""
    running = RunningSystem(nowhere, elsewhere, simulate=True)
    try:
        live = await asyncio.to_thread(running.__enter__)
        try:
            await services_started(running, live)
            yield live
        finally:
            await asyncio.to_thread(running.__exit__, None, None, None)
    finally:
        sys.stderr.write(f"--- careknot up said:\n{running.log_tail()}\n")
    assert running.returncode == 0
    assert processes_in(NAMESPACE) == [], "careknot up left processes behind"


async def services_started(running: RunningSystem, settings: Settings) -> None:
    """Every ingest subscribed to MQTT and the gateway listening (they say so), and the workers
    holding their Kafka partitions: a fix or a fall published before then would be lost."""

    async def said_so() -> bool | None:
        said = running.log_path.read_text(errors="replace")
        started = said.count("ingest subscribed") >= INGESTS and "gateway on" in said
        return True if started else None

    await wait_for(said_so, READY_WITHIN_S, "the ingests' subscriptions and the gateway")
    await worker_ready(settings, READY_WITHIN_S)


async def register(settings: Settings) -> None:
    """An agency of the test's own: one caregiver, and a home with a fall detector."""
    async with Database(settings) as db:
        await db.upsert_agency(AGENCY, "Bare Machine Care")
        await db.upsert_caregivers([CaregiverRow(CAREGIVER, AGENCY, "Bea Bare")])
        await db.upsert_patients([PatientRow(PATIENT, AGENCY, "Pat Bare", *HOME)])
        await db.upsert_devices([DeviceRow(DEVICE, AGENCY, PATIENT, "fall_detector")])


def test_up_starts_a_server_for_each_url_where_nothing_answers(
    system: Settings, nowhere: Settings, elsewhere: Path
) -> None:
    assert system.mqtt_url != nowhere.mqtt_url
    assert system.redis_url != nowhere.redis_url
    assert system.postgres_dsn != nowhere.postgres_dsn
    logs = {path.name for path in (elsewhere / SERVERS).glob("*.log")}
    assert {"redis.log", "postgres.log", "tansu.log"} <= logs
    assert logs & {"mosquitto.log", "amqtt.log"}


def with_identities(elsewhere: Path) -> bool:
    return (elsewhere / SERVERS / "mosquitto.log").exists() and dynsec_plugin() is not None


def test_its_mosquitto_keeps_its_passwords_to_its_owner(system: Settings, elsewhere: Path) -> None:
    if not with_identities(elsewhere):
        pytest.skip("amqtt, or Mosquitto without its dynamic security plugin: no identities")
    assert system.mqtt_username == "careknot-service"
    assert Path(system.mqtt_password_file).stat().st_mode & 0o077 == 0
    assert Path(system.mqtt_admin_password_file).stat().st_mode & 0o077 == 0


async def test_its_mosquitto_refuses_anonymous_clients(system: Settings, elsewhere: Path) -> None:
    if not with_identities(elsewhere):
        pytest.skip("amqtt, or Mosquitto without its dynamic security plugin: no identities")
    with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed"):
        async with aiomqtt.Client(system.mqtt_host, system.mqtt_port):
            pass


async def test_a_fall_is_offered_to_the_caregiver_nearby(system: Settings) -> None:
    s = system
    await register(s)
    phone = await Phone.open(s, token(s, "caregiver", CAREGIVER, AGENCY))
    desk = await Phone.open(s, token(s, "dispatcher", f"bare-desk-{RUN}", AGENCY))
    async with access_of(s).client() as mqtt:  # the services' credentials, where there are
        fix = {
            "_type": "location",
            "lat": NEAR[0],
            "lon": NEAR[1],
            "tst": int(time.time()),
            "acc": 8,
        }
        await mqtt.publish(f"ck/{AGENCY}/cg/{CAREGIVER}/loc", orjson.dumps(fix), qos=1)
        await desk.expect(is_type("location", caregiver_id=CAREGIVER))
        fall = {"type": "fall", "ts": time.time(), "seq": 1, "data": {}}
        await mqtt.publish(f"ck/{AGENCY}/dev/{DEVICE}/evt", orjson.dumps(fall), qos=1)
        offer = await phone.expect(is_type("offer"))
    offered = await desk.expect(is_type("incident", patient_id=PATIENT, state="offered"))
    assert offer["incident"]["incident_id"] == offered["incident_id"]
    assert offer["incident"]["kind"] == "fall"
    await phone.close()
    await desk.close()
