"""Who may publish what, enforced by the broker: a Mosquitto of the module's own, started as
``careknot up`` starts one (anonymous clients refused, the dynamic security plugin on, default
deny), two fall detectors given credentials of their own through the plugin's control API
(``adapters.mqtt.dynsec``).

Device A publishes under its own topic and the admin's subscriber gets it; A publishing under
B's topic is refused (MQTT 5: PUBACK reason code 135, not authorised; MQTT 3.1.1 has no way to
say it: the broker acknowledges and drops it) and nothing is delivered; an unknown client, a
wrong password and an anonymous client cannot connect; A may subscribe to its own commands, not
to B's. One publisher's password is set, or its client withdrawn, asking the broker for that
client alone, never a username held with another's role. Then ingest, with the services'
credentials from the settings, takes A's fall through to Kafka, and a fall forged by A under B's
id never reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import aiomqtt
import orjson
import pytest

from adapters.mqtt.access import BrokerAccess, access_of, admin_access
from adapters.mqtt.dynsec import DynSec, Publisher, UsernameTaken
from adapters.storage.postgres import Database, DeviceRow, PatientRow
from careknot.servers.embedded import Started
from ingest.service import IngestService
from kernel import keys
from kernel.settings import Settings
from kernel.waiting import poll_until
from tests.adapters.own_broker import NOT_AUTHORISED, Reasoned, as_device, broker
from tests.support import kafka_reader

pytestmark = pytest.mark.servers

__all__ = ["broker"]  # the module's own Mosquitto (tests.adapters.own_broker)

TAG = uuid.uuid4().hex[:8]
AGENCY = f"id-{TAG}"
DEVICE_A, DEVICE_B = f"id-{TAG}-a", f"id-{TAG}-b"
PASSWORD_A, PASSWORD_B = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
WITHIN_S = 30.0


def evt(device: str) -> str:
    return f"ck/{AGENCY}/dev/{device}/evt"


def fall(seq: int) -> bytes:
    return orjson.dumps({"type": "fall", "ts": time.time(), "seq": seq})


@pytest.fixture(scope="module")
async def secured(settings: Settings, broker: Started) -> Settings:
    """The module's settings on its own broker, devices A and B given their credentials."""
    own = settings.model_copy(update={**broker.update, "ingest_metrics_port": 0})
    admin = admin_access(own)
    assert admin is not None
    async with DynSec(admin) as control:
        made = await control.provision(
            [
                Publisher(AGENCY, "dev", DEVICE_A, PASSWORD_A),
                Publisher(AGENCY, "dev", DEVICE_B, PASSWORD_B),
            ]
        )
        again = await control.provision([Publisher(AGENCY, "dev", DEVICE_A, PASSWORD_A)])
    assert (made, again) == (2, 0)
    return own


@contextlib.asynccontextmanager
async def watching(settings: Settings) -> AsyncIterator[aiomqtt.Client]:
    """The admin, subscribed to every topic of the module's agency."""
    admin = admin_access(settings)
    assert admin is not None
    async with admin.client(identifier=f"watch-{uuid.uuid4().hex[:6]}") as watcher:
        await watcher.subscribe(f"ck/{AGENCY}/#", qos=1)
        yield watcher


async def next_message(watcher: aiomqtt.Client) -> aiomqtt.Message:
    async with asyncio.timeout(WITHIN_S):
        return await anext(aiter(watcher.messages))


async def test_a_device_publishes_under_its_own_topic_and_not_under_another(
    secured: Settings,
) -> None:
    async with watching(secured) as watcher:
        async with Reasoned(as_device(secured, DEVICE_A, PASSWORD_A)) as a:
            await a.publish(evt(DEVICE_B), fall(1), qos=1, timeout=WITHIN_S)
            await a.publish(evt(DEVICE_A), fall(2), qos=1, timeout=WITHIN_S)
        assert [code.value for code in a.pubacks] == [NOT_AUTHORISED, 0]
        first = await next_message(watcher)  # the forged one would have come first
    assert (first.topic.value, orjson.loads(first.payload)["seq"]) == (evt(DEVICE_A), 2)


async def test_mqtt_311_cannot_be_told_but_nothing_forged_is_delivered(
    secured: Settings,
) -> None:
    access = as_device(secured, DEVICE_A, PASSWORD_A)
    async with watching(secured) as watcher:
        async with access.client(protocol=aiomqtt.ProtocolVersion.V311) as a:
            await a.publish(evt(DEVICE_B), fall(3), qos=1, timeout=WITHIN_S)  # acknowledged
            await a.publish(evt(DEVICE_A), fall(4), qos=1, timeout=WITHIN_S)
        first = await next_message(watcher)
    assert orjson.loads(first.payload)["seq"] == 4


@pytest.mark.parametrize(
    ("username", "password"),
    [
        (f"id-{TAG}-unknown", "whatever"),
        (DEVICE_A, PASSWORD_B),
        (None, None),
    ],
    ids=["unknown client", "wrong password", "anonymous"],
)
async def test_who_is_not_known_cannot_connect(
    secured: Settings, username: str | None, password: str | None
) -> None:
    access = BrokerAccess(secured.mqtt_host, secured.mqtt_port, username, password)
    for protocol in (aiomqtt.ProtocolVersion.V311, aiomqtt.ProtocolVersion.V5):
        with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed"):
            async with access.client(protocol=protocol):
                pass


async def test_a_device_reads_its_own_commands_not_another_s(secured: Settings) -> None:
    mine, theirs = f"ck/{AGENCY}/dev/{DEVICE_A}/cmd/#", f"ck/{AGENCY}/dev/{DEVICE_B}/cmd/#"
    async with Reasoned(as_device(secured, DEVICE_A, PASSWORD_A)) as a:
        granted = await a.subscribe(mine, qos=1)
        refused = await a.subscribe(theirs, qos=1)
        everything = await a.subscribe(f"ck/{AGENCY}/#", qos=1)
        await a.publish(f"ck/{AGENCY}/dev/{DEVICE_A}/cmd/reboot", b"{}", qos=1)
    assert [c.value for c in granted] == [1]  # type: ignore[union-attr]
    assert [c.value for c in refused] == [NOT_AUTHORISED]  # type: ignore[union-attr]
    assert [c.value for c in everything] == [NOT_AUTHORISED]  # type: ignore[union-attr]
    assert [c.value for c in a.pubacks] == [NOT_AUTHORISED]  # its commands are not its to send


class Asked(DynSec):
    """The control API, keeping the name of every command it sends."""

    def __init__(self, access: BrokerAccess) -> None:
        super().__init__(access)
        self.asked: list[str] = []

    async def send(
        self, commands: Sequence[dict[str, Any]], *, tolerate: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        self.asked += [c["command"] for c in commands]
        return await super().send(commands, tolerate=tolerate)


async def connects(settings: Settings, username: str, password: str) -> bool:
    try:
        async with as_device(settings, username, password).client():
            return True
    except aiomqtt.MqttError as exc:
        if "authori" not in str(exc).lower():
            raise
        return False


async def test_one_publishers_password_is_set_asking_only_for_its_own_client(
    secured: Settings,
) -> None:
    """A new publisher is made, a known one's password replaced, and a username another's (an
    OwnTracks user named as device A) given nothing; no call lists the broker's every client."""
    admin = admin_access(secured)
    assert admin is not None
    new, asking = f"id-{TAG}-c", Asked(admin)
    async with asking as control:
        assert await control.roles_of(new) is None
        assert await control.give_password(Publisher(AGENCY, "cg", new, "first-1"))
        assert await control.roles_of(new) == frozenset({f"ck-cg-{AGENCY}-{new}"})
        assert not await control.give_password(Publisher(AGENCY, "cg", new, "second-2"))
        with pytest.raises(UsernameTaken):
            await control.give_password(Publisher(AGENCY, "ot", DEVICE_A, "stolen-3"))
        with pytest.raises(UsernameTaken):
            await control.withdraw(AGENCY, "ot", DEVICE_A)
    assert "listClients" not in asking.asked and "getClient" in asking.asked
    assert (await connects(secured, new, "first-1"), await connects(secured, new, "second-2")) == (
        False,
        True,
    )
    assert await connects(secured, DEVICE_A, PASSWORD_A)
    assert not await connects(secured, DEVICE_A, "stolen-3")
    async with DynSec(admin) as control:
        await control.withdraw(AGENCY, "cg", new)
        assert await control.roles_of(new) is None
    assert not await connects(secured, new, "second-2")


@pytest.fixture(scope="module")
async def registered(secured: Settings, db: Database) -> Settings:
    await db.upsert_agency(AGENCY, "Identity Care")
    await db.upsert_patients([PatientRow(f"id-{TAG}-p", AGENCY, "Ada", 53.8, -1.55)])
    await db.upsert_devices(
        [
            DeviceRow(DEVICE_A, AGENCY, f"id-{TAG}-p", "fall_detector"),
            DeviceRow(DEVICE_B, AGENCY, f"id-{TAG}-p", "fall_detector"),
        ]
    )
    return secured


async def test_ingest_connects_with_credentials_and_takes_a_fall_to_kafka(
    registered: Settings,
) -> None:
    assert registered.mqtt_username and registered.mqtt_password_file  # from the broker's start
    async with IngestService(registered) as service:
        task = asyncio.create_task(service.run("emergencies"), name="ingest-under-test")
        try:
            await asyncio.wait_for(service.subscribed.wait(), WITHIN_S)
            async with Reasoned(as_device(registered, DEVICE_A, PASSWORD_A)) as a:
                await a.publish(evt(DEVICE_B), fall(10), qos=1, timeout=WITHIN_S)
                await a.publish(evt(DEVICE_A), fall(11), qos=1, timeout=WITHIN_S)
            async with kafka_reader(registered, keys.DEVICE_EVENTS) as reader:
                seen: list[tuple[str, int]] = []

                async def taken() -> bool | None:
                    if task.done():
                        pytest.fail(f"ingest ended: {task.exception()!r}")
                    for records in (await reader.getmany(timeout_ms=200)).values():
                        for r in records:
                            v = orjson.loads(r.value or b"{}")
                            seen.append((v["device_id"], v["seq"]))
                    return True if (DEVICE_A, 11) in seen else None

                await poll_until(taken, WITHIN_S, "A's fall on Kafka")
            assert seen == [(DEVICE_A, 11)]  # B's forged fall (10), before it, never came
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_service_without_credentials_is_refused(registered: Settings) -> None:
    anonymous = registered.model_copy(update={"mqtt_username": "", "mqtt_password_file": ""})
    with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed"):
        async with access_of(anonymous).client():
            pass
