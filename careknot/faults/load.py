"""What a fault run sends and what its people see, each keeping a log to count from.

- :class:`FixStream`: phones' fixes over MQTT at a fixed rate (QoS 0, one fix a message, as
  phones send them), the load's caregivers driving through town (:mod:`simulators.load`) and
  the falls' caregivers standing near the homes, a fix every :data:`STANDING_FIX_S` each; a
  lost connection is made again, what could not be written meanwhile is not sent (logged as
  not published).
- :class:`FallDevices`: fall detectors, each fall from a detector of its own at a home of its
  own, published with QoS 1 and sent again until the broker acknowledges it, as a device does.
- :class:`CaregiverPhone` and :class:`DispatcherConsole`: WebSocket clients that connect
  again when they lose the gateway, resuming from the last ``seq`` of their ``epoch``; a
  caregiver accepts every offer, the dispatcher resolves every assigned incident (so its
  caregiver is free again).
- :class:`KafkaTap`: what reached Kafka (ingest's acceptance): fixes and device events read
  from their topics as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import orjson
from aiokafka import AIOKafkaConsumer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from adapters.mqtt import wire as mqtt_wire
from adapters.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow
from kernel.backoff import Backoff
from kernel.settings import Settings
from simulators import load
from simulators.phone import token

log = logging.getLogger(__name__)

AGENCY = "faults"
HOME = (53.8008, -1.5491)  # Leeds
STANDING_FIX_S = 2.0
TICK_S = 0.01
FALL_PATIENCE_S = 300.0  # a device tries this long, as ingest tries Kafka for its event
CONNECT_TIMEOUT_S = 5.0

FixKey = tuple[str, int]


def fall_caregiver(k: int) -> str:
    return f"fcg-{k}"


def fall_device(n: int) -> str:
    return f"fd-{n}"


def caregiver_spot(k: int, step: int) -> tuple[float, float]:
    """Where the ``k``-th falls' caregiver stands (a few metres' drift a fix)."""
    angle = k * 2.399963  # golden angle: spread around the homes
    return (
        HOME[0] + 0.004 * math.cos(angle) + (step % 5) * 2e-6,
        HOME[1] + 0.006 * math.sin(angle),
    )


def home(n: int) -> tuple[float, float]:
    return HOME[0] + (n % 40) * 1e-4, HOME[1] + (n // 40) * 1e-4


async def seed(db: Database, load_ids: list[str], caregivers: int, falls: int) -> None:
    """The load's agency and homes, and the falls' agency: its caregivers, one home and one
    fall detector a fall."""
    await load.seed(db, load_ids)
    await db.upsert_agency(AGENCY, "Fault Care")
    await db.upsert_caregivers(
        [CaregiverRow(fall_caregiver(k), AGENCY, f"Carer {k}") for k in range(caregivers)]
    )
    await db.upsert_patients(
        [PatientRow(f"fpat-{n}", AGENCY, f"Pat {n}", *home(n)) for n in range(falls)]
    )
    await db.upsert_devices(
        [DeviceRow(fall_device(n), AGENCY, f"fpat-{n}", "fall_detector") for n in range(falls)]
    )


# ---------------------------------------------------------------- fixes


@dataclass
class FixStream:
    """Fixes at ``rate`` a second from ``load_ids`` (driving) and ``caregivers`` falls'
    caregivers (standing), until :meth:`stop`; ``written`` maps each fix sent to when."""

    settings: Settings
    load_ids: list[str]
    caregivers: int
    rate: float
    written: dict[FixKey, float] = field(default_factory=dict)
    unsent: int = 0
    reconnects: int = 0
    base_tst: int = field(default_factory=lambda: int(time.time()) - load.TST_SPAN_S)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _rate_now: float = 0.0

    def stop(self) -> None:
        self._stop.set()

    def slow_to(self, rate: float) -> None:
        """From now on ``rate`` fixes a second of the load (the tail after the stream)."""
        self._rate_now = rate

    async def run(self, events: int) -> None:
        """Send ``events`` load fixes at the rate (then a trickle until stopped), the standing
        caregivers' fixes beside them."""
        self._rate_now = self.rate
        writer: asyncio.StreamWriter | None = None
        sent, started, standing_at = 0, time.monotonic(), 0.0
        owed = 0.0
        last = started
        standing_step = 0
        stand_tst = int(time.time())
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                owed += (now - last) * (self._rate_now if sent >= events else self.rate)
                last = now
                batch: list[tuple[FixKey, bytes]] = []
                while owed >= 1:
                    batch.append(self._load_fix(sent))
                    sent += 1
                    owed -= 1
                if now >= standing_at:
                    standing_at = now + STANDING_FIX_S
                    batch += self._standing(standing_step, stand_tst + 2 * standing_step)
                    standing_step += 1
                if batch:
                    writer = await self._write(writer, batch)
                await asyncio.sleep(TICK_S)  # pacing the offered rate
        finally:
            if writer is not None:
                writer.close()

    @property
    def load_sent(self) -> int:
        return sum(1 for cg, _ in self.written if not cg.startswith("fcg-"))

    def _load_fix(self, k: int) -> tuple[FixKey, bytes]:
        n = len(self.load_ids)
        cg, step = self.load_ids[k % n], k // n
        index = int(cg.rsplit("-", 1)[1])
        payload = load.fix_payload(index, step, self.base_tst)
        topic = f"ck/{load.AGENCY}/cg/{cg}/loc"
        return (cg, load.fix_tst(self.base_tst, step)), mqtt_wire.publish(topic, payload)

    def _standing(self, step: int, tst: int) -> list[tuple[FixKey, bytes]]:
        out = []
        for k in range(self.caregivers):
            lat, lon = caregiver_spot(k, step)
            fix = {"_type": "location", "lat": lat, "lon": lon, "tst": tst, "acc": 8}
            topic = f"ck/{AGENCY}/cg/{fall_caregiver(k)}/loc"
            out.append(((fall_caregiver(k), tst), mqtt_wire.publish(topic, orjson.dumps(fix))))
        return out

    async def _write(
        self, writer: asyncio.StreamWriter | None, batch: list[tuple[FixKey, bytes]]
    ) -> asyncio.StreamWriter | None:
        try:
            if writer is None or writer.is_closing():
                writer = await self._connect()
            writer.write(b"".join(p for _, p in batch))
            await asyncio.wait_for(writer.drain(), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ConnectionError) as exc:
            self.unsent += len(batch)
            if writer is not None:
                writer.transport.abort()
                self.reconnects += 1
                log.info("fixes: connection lost (%s); connecting again", exc)
            return None
        at = time.time()
        for key, _ in batch:
            self.written[key] = at
        return writer

    async def _connect(self) -> asyncio.StreamWriter:
        s = self.settings
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(s.mqtt_host, s.mqtt_port), CONNECT_TIMEOUT_S
        )
        writer.write(mqtt_wire.connect(f"faults-fixes-{secrets.token_hex(4)}"))
        await writer.drain()
        connack = await asyncio.wait_for(reader.readexactly(4), CONNECT_TIMEOUT_S)
        if not mqtt_wire.connack_accepted(connack):
            writer.close()
            raise ConnectionError(f"refused: {connack!r}")
        return writer


# ---------------------------------------------------------------- falls


@dataclass
class Fall:
    n: int
    device: str
    first_sent: float
    acked_at: float | None = None
    attempts: int = 0


@dataclass
class FallDevices:
    """Each fall from a detector of its own, sent with QoS 1 until the broker has it."""

    settings: Settings
    falls: dict[str, Fall] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def fall(self, n: int) -> None:
        device = fall_device(n)
        self.falls[device] = Fall(n, device, time.time())
        task = asyncio.create_task(self._send(self.falls[device]), name=f"fall {n}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self, within: float) -> None:
        """Wait for the devices still trying, up to ``within``; the rest give up."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=within)
            for task in pending:
                task.cancel()

    async def _send(self, fall: Fall) -> None:
        s = self.settings
        payload = orjson.dumps({"type": "fall", "ts": fall.first_sent, "seq": 1, "data": {}})
        topic = f"ck/{AGENCY}/dev/{fall.device}/evt"
        backoff = Backoff(0.2, 2.0)
        while time.time() - fall.first_sent < FALL_PATIENCE_S:
            fall.attempts += 1
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S * 2):
                    async with aiomqtt.Client(
                        s.mqtt_host, s.mqtt_port, identifier=f"faults-{fall.device}", timeout=5
                    ) as client:
                        await client.publish(topic, payload, qos=1)
                fall.acked_at = time.time()
                return
            except (aiomqtt.MqttError, OSError, TimeoutError):
                await asyncio.sleep(backoff.next())  # a device's wait before trying again


# ---------------------------------------------------------------- people on the WebSocket


@dataclass
class Seen:
    """One frame a client got, and when."""

    at: float
    frame: dict[str, Any]
    epoch: int
    connection: int


class Client:
    """A WebSocket client that connects again (resuming) whenever it loses the gateway."""

    def __init__(self, settings: Settings, tok: str, name: str) -> None:
        self.settings, self.token, self.name = settings, tok, name
        self.seen: list[Seen] = []
        self.connections = 0
        self.connected_at: list[float] = []
        self.resyncs = 0
        self.connected = False
        self.epoch = 0
        self.last_seq = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = Backoff(0.1, 1.0)
        while True:
            s = self.settings
            url = f"ws://{s.gateway_host}:{s.gateway_port}/ws"
            if self.connections:
                url += f"?last_seq={self.last_seq}&epoch={self.epoch}"
            bearer = {"Authorization": f"Bearer {self.token}"}
            try:
                async with connect(
                    url, open_timeout=CONNECT_TIMEOUT_S, additional_headers=bearer
                ) as ws:
                    self.connections += 1
                    self.connected_at.append(time.time())
                    self.connected = True
                    backoff.reset()
                    async for raw in ws:
                        await self._on(ws, orjson.loads(raw))
            except (OSError, TimeoutError, WebSocketException) as exc:
                log.debug("%s: %s", self.name, exc)
            self.connected = False
            await asyncio.sleep(backoff.next())  # a phone's wait before connecting again

    async def _on(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "hello":
            if not self.epoch:
                self.epoch = int(frame.get("epoch") or 0)
            return
        if kind == "resync":
            self.resyncs += 1
            self.epoch, self.last_seq = int(frame["epoch"]), 0
            return
        if isinstance(frame.get("seq"), int):
            self.last_seq = max(self.last_seq, frame["seq"])
            if frame.get("epoch"):
                self.epoch = int(frame["epoch"])
        self.seen.append(Seen(time.time(), frame, self.resyncs, self.connections))
        await self.react(ws, frame)

    async def react(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        """What this person does on a frame."""

    def frames(self, kind: str) -> list[Seen]:
        return [s for s in self.seen if s.frame.get("type") == kind]


class CaregiverPhone(Client):
    """Accepts every offer."""

    def __init__(self, settings: Settings, caregiver: str) -> None:
        super().__init__(
            settings, token(settings, "caregiver", caregiver, AGENCY), f"phone {caregiver}"
        )
        self.caregiver = caregiver

    async def react(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        if frame.get("type") == "offer":
            with contextlib.suppress(WebSocketException):
                await ws.send(orjson.dumps({"type": "accept", "offer_id": frame["offer_id"]}))


class DispatcherConsole(Client):
    """Resolves every incident once it is assigned, so its caregiver is free again."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, token(settings, "dispatcher", "desk", AGENCY), "console")

    async def react(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        if frame.get("type") == "incident" and frame.get("state") == "assigned":
            resolve = {"type": "resolve", "incident_id": frame["incident_id"], "note": "fine"}
            with contextlib.suppress(WebSocketException):
                await ws.send(orjson.dumps(resolve))


# ---------------------------------------------------------------- what reached Kafka


class KafkaTap:
    """Fixes and device events on Kafka, read as they come (read again from the start when
    the broker lost them: a restarted tansu is empty)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.fixes: dict[FixKey, float] = {}
        self.events: dict[str, str] = {}  # device -> event_id
        self.event_copies: Counter[str] = Counter()
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kafka tap")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        topics = [self.settings.keys.topic(t) for t in ("fixes", "device-events")]
        while True:
            consumer = AIOKafkaConsumer(
                *topics,
                bootstrap_servers=self.settings.kafka_bootstrap,
                auto_offset_reset="earliest",
                group_id=None,
                request_timeout_ms=5000,
                metadata_max_age_ms=1000,
            )
            try:
                await consumer.start()
                checked = time.monotonic()
                while True:
                    batch = await consumer.getmany(timeout_ms=200)
                    now = time.time()
                    for records in batch.values():
                        for record in records:
                            self._take(record.topic, record.value, now)
                    if time.monotonic() - checked > 1.0:
                        checked = time.monotonic()
                        await self._rewind_lost(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away: read again when it is back
                self.errors += 1
                log.info("kafka tap: %s; reading again", exc)
                await asyncio.sleep(0.5)  # the broker's restart
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    @staticmethod
    async def _rewind_lost(consumer: AIOKafkaConsumer) -> None:
        """A partition that ends before where we read lost its records (a tansu started
        again): read it from its start (what is read twice counts once)."""
        partitions = list(consumer.assignment())
        if not partitions:
            return
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            if ends[tp] < await consumer.position(tp):
                await consumer.seek_to_beginning(tp)

    def _take(self, topic: str, value: bytes | None, now: float) -> None:
        if not value:
            return
        data = orjson.loads(value)
        if topic.endswith("device-events"):
            device = data["device_id"]
            self.events.setdefault(device, data["event_id"])
            self.event_copies[data["event_id"]] += 1
            return
        for fix in data if isinstance(data, list) else [data]:
            self.fixes.setdefault((fix["caregiver_id"], round(fix["ts"])), now)
