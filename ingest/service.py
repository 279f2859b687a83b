"""The ingest service: an MQTT subscriber that validates and produces to Kafka.

``async with IngestService(settings) as svc: await svc.run()``. Several ingest processes share
the load through a shared subscription (``$share/...``, on the MQTT 3.1.1 connections of
:func:`adapters.mqtt.client.subscribed`). It reads the v1 topics and, unchanged, what the
OwnTracks app publishes (``owntracks/{user}/{device}``). Bad input goes to the dead-letter
topic with its reason and is counted; it never stops the loop, nor does a message whose handling
fails unexpectedly (dead-lettered as ``internal_error``, its traceback logged).
Counters are served in the Prometheus text format on ``CAREKNOT_INGEST_METRICS_PORT`` (see
:mod:`adapters.metrics`). Device events come on an MQTT connection of their own and leave by a
producer of their own: an emergency never waits behind thousands of positions. Each connection
is a :class:`~adapters.mqtt.subscription.Subscription`: made within the start timeout, else
:meth:`IngestService.run` raises :class:`~kernel.errors.BrokerUnavailable`; made again, for
ever, whenever it is lost later.

Nothing accepted is lost. Each connection is a persistent MQTT session of a stable client id
(:func:`client_id`, from ``CAREKNOT_INGEST_CLIENT_ID``): the broker queues what arrives at QoS 1
while ingest is away and sends it when ingest is back. A batch is acknowledged to the broker
only once Kafka has everything it produced: its dead letters and presence notices, and the
packed messages its fixes went into (:mod:`ingest.acks`; batches in order, nothing flushed per
batch). What Kafka does not take is counted (``careknot_ingest_produce_failures``) and logged,
and its batch is not acknowledged: the connection is given up and made again, and the broker
sends the batches not acknowledged again (a message of QoS 0 is lost, as its sender chose); the
producers reach Kafka again by themselves. A device event is sent again in place, its batch
unacknowledged, until Kafka takes it or :data:`ingest.device_events.DEADLINE_S` has passed;
then it is counted, logged with its content, and comes again the same way. An ingest that dies
leaves what it did not acknowledge to the broker; one stopped in order may leave some that
Kafka had, which come again (every sink is idempotent on the event's key). What Postgres does
not answer (the registry's look-ups) holds only the messages of publishers never seen, for a
while, then refuses them as ``registry_unavailable``: see :mod:`ingest.registry`.

Bounded: a publish over the payload cap and its topic's room is refused as it arrives, never
buffered (``too_large``, dead-lettered with its first bytes, counted with its size in
``careknot_ingest_refused_bytes``, acknowledged with its batch), and each connection holds at
most :data:`INBOX_CAPACITY` messages before it stops reading from the broker, which holds the
rest (:mod:`adapters.mqtt.client`); the registry's cache is bounded too.

Telemetry (vitals from the homes' monitors) comes on a third connection, shared as positions
are, and its samples are packed as fixes are (one Kafka message per partition, keyed by
device), so neither a fall nor a fix waits behind it; its batches too are acknowledged once
Kafka has their samples.

Batched for throughput: messages are decoded from the wire in bulk (:mod:`adapters.mqtt.client`),
one wake-up takes every message waiting (up to :data:`BATCH`), the registry is asked about a
batch's unknown publishers in one query, a well-formed location takes a fast path (plain checks
on the decoded JSON; anything unusual goes through the pydantic parser, which gives the same
rejections), fixes are packed into one Kafka message per partition
(:mod:`ingest.batching`) for at most :data:`FLUSH_AFTER_S` or :data:`FLUSH_FIXES`, and produced
without awaiting each delivery: a failed delivery is counted and logged when it fails, and at
most :data:`MAX_IN_FLIGHT` fixes are unsettled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Literal

import orjson

from adapters import kafka
from adapters.metrics import IngestMetrics, serve, totals
from adapters.mqtt.access import access_of
from adapters.mqtt.client import end_session
from adapters.mqtt.frames import Publish
from adapters.mqtt.subscription import START_TIMEOUT_S, Subscription
from adapters.storage.postgres import Database
from ingest import device_events, owntracks
from ingest.acks import AckLine, Receipt, Round
from ingest.batching import FixBatches
from ingest.fast_path import fast_fix, fast_reading
from ingest.parse import (
    TOO_LARGE,
    Limits,
    Route,
    check_kind,
    dead_letter,
    location_fix,
    parse_device_event,
    parse_device_status,
    parse_location,
    parse_presence,
    parse_telemetry,
    presence_notice,
    route,
)
from ingest.registry import Registry
from kernel import heap, keys
from kernel.contracts import ACTIVITY_EVENT_TYPES, DeviceEvent
from kernel.errors import RejectedPayload, StorageError
from kernel.settings import Settings
from kernel.waiting import answers

log = logging.getLogger(__name__)

POSITIONS = ("ck/+/cg/+/loc", "ck/+/cg/+/status", owntracks.SUBSCRIPTION)
EMERGENCIES = ("ck/+/dev/+/evt", "ck/+/dev/+/status")
"""Device events come on a connection of their own, so a fall never queues behind positions;
the devices' status (heartbeats, births, last wills: a few a minute a device) with them."""
TELEMETRY = ("ck/+/dev/+/tel",)
"""Telemetry (vitals) is a flood as positions are: a connection of its own, so it delays
neither a fall nor a fix, shared among ingest processes as positions are."""
Streams = Literal["all", "positions", "emergencies", "telemetry"]
STREAMS = {"positions": POSITIONS, "emergencies": EMERGENCIES, "telemetry": TELEMETRY}
SHARED = ("positions", "telemetry")
"""The streams whose load ingest processes split (``$share/...``)."""
STATS_EVERY_S = 30.0
BATCH = 500
INBOX_CAPACITY = 10 * BATCH
"""Messages a connection holds for ingest before it stops reading from the broker."""
MAX_IN_FLIGHT = 20_000
PRODUCER_LINGER_MS = 5
FLUSH_FIXES = 1000
"""Packed fixes (or telemetry samples) waiting that are sent at once."""
FLUSH_AFTER_S = 0.05
"""The longest a fix waits for others to be packed with: the stream processors and Kafka pay per
message, so fewer, fuller messages cost the whole system less CPU per fix, which under load is
also what keeps latency down (the measurements are in docs/benchmarks-history.md)."""
PRODUCER_BATCH_BYTES = 256 * 1024
PACKED = (keys.FIXES, keys.TELEMETRY, keys.HOME_ACTIVITY)
"""The topics whose records ingest packs, many to a Kafka message."""
Settle = Callable[[bool], None]
"""Told that a message is delivered (False) or failed (True)."""
LEAVE_WITHIN_S = 5.0
"""How long an ingest stopped in order waits for Kafka to take what it handled, so as to
acknowledge it before it disconnects."""
INTERNAL_ERROR = "internal_error"
"""The dead letter's reason for a message whose handling failed unexpectedly (a bug): the
message is dead-lettered and counted, and the rest of its batch handled."""


@dataclass
class Packing:
    """What waits to be produced to one topic: values packed per partition, the receipts of
    the batches they came from (their round), and when they are due to be sent."""

    batches: FixBatches
    round: Round = field(default_factory=Round)
    timer: asyncio.TimerHandle | None = None
    flushing: asyncio.Lock = field(default_factory=asyncio.Lock)


class IngestService:
    def __init__(self, settings: Settings, *, start_timeout_s: float = START_TIMEOUT_S) -> None:
        self._s = settings
        self._start_timeout_s = start_timeout_s  # for the first connection to the MQTT broker
        self._limits = Limits(
            settings.max_payload_bytes, settings.max_clock_skew_s, settings.max_fix_ahead_s
        )
        self._db = Database(settings, max_size=8)
        # acks="all": a batch is acknowledged to the MQTT broker once Kafka has what it
        # produced, so Kafka must have it for good, every in-sync replica, not only the leader
        # that may die before the others copy it; for fixes too, at the cost of the replicas'
        # round trip (nothing on one broker), since an acknowledged fix is the caregiver's
        # history. Neither producer is idempotent: see kafka.Producer.
        self._producer = kafka.Producer(
            settings,
            linger_ms=PRODUCER_LINGER_MS,
            max_batch_bytes=PRODUCER_BATCH_BYTES,
            acks="all",
        )
        self._urgent = kafka.Producer(settings, acks="all")  # device events: no batch ahead
        self._registry = Registry(self._db)
        self.metrics = IngestMetrics()
        self._accepted = {s: self.metrics.fixes_accepted.labels(s) for s in ("ck", "owntracks")}
        self._accepted_now: Counter[str] = Counter()  # a batch's, counted once it is handled
        self.subscribed = asyncio.Event()
        self.subscriptions: list[str] = []  # once subscribed
        self._listening: list[Subscription] = []
        self._metrics_server: asyncio.Server | None = None
        self._in_flight = 0
        self._settled = asyncio.Event()
        self._packing = {topic: Packing(FixBatches(1)) for topic in PACKED}
        self._flushes: set[asyncio.Task[None]] = set()
        self._emptied = asyncio.Event()  # an acknowledgement line has nothing waiting

    async def __aenter__(self) -> IngestService:
        await kafka.ensure_topics(self._s, keys.TOPICS)
        await self._db.__aenter__()
        await self._producer.start()
        await self._urgent.start()
        for topic in PACKED:
            self._packing[topic].batches = FixBatches(await self._producer.partitions(topic))
        self._metrics_server = await serve(
            self.metrics.registry,
            self._s.ingest_metrics_port,
            self._s.metrics_host,
            health=self.health,
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._metrics_server is not None:
            self._metrics_server.close()
            await self._metrics_server.wait_closed()
        await self.flush()
        await self._producer.stop()  # delivers what is still in flight
        await self._urgent.stop()
        await self._db.__aexit__(et, e, tb)

    async def health(self) -> dict[str, bool]:
        """Whether its MQTT connections stand, and Kafka and Postgres answer (``/healthz``)."""
        kafka_answers, postgres = await asyncio.gather(
            answers(self._urgent.ping()), answers(self._db.ping())
        )
        mqtt = bool(self._listening) and all(s.connected for s in self._listening)
        return {"mqtt": mqtt, "kafka": kafka_answers, "postgres": postgres}

    @property
    def metrics_port(self) -> int | None:
        """The port metrics are served on, or None when they are not."""
        if self._metrics_server is None or not self._metrics_server.sockets:
            return None
        return int(self._metrics_server.sockets[0].getsockname()[1])

    def _topics(self, name: str) -> list[str]:
        """What the connection of stream ``name`` subscribes to. Positions are shared among
        ingest processes (``$share/...``); device events never are: every ingest of them takes
        every one (the dispatcher opens one incident per event, whoever produced it), since
        losing a fall costs more than handling it twice, and a broker that crashed keeps a plain
        subscription of a persistent session (Mosquitto 2.0 did not keep a shared one)."""
        subscriptions = STREAMS[name]
        if self._s.mqtt_shared_subscriptions and name in SHARED:
            group = self._s.mqtt_share_group or f"careknot-{self._s.namespace}"
            return [f"$share/{group}/{t}" for t in subscriptions]
        return list(subscriptions)

    async def run(self, streams: Streams = "all") -> None:
        """Listen for positions and for device events (or only one of them), each on a
        connection of its own, until cancelled; :class:`~kernel.errors.BrokerUnavailable` when
        a first connection is not made within the start timeout."""
        names = [name for name in STREAMS if streams in ("all", name)]
        async with AsyncExitStack() as connected:
            listening = [await connected.enter_async_context(self._subscription(n)) for n in names]
            self._listening = listening
            self.subscriptions = [topic for s in listening for topic in s.topics]
            log.info("ingest subscribed to %s", self.subscriptions)
            self.subscribed.set()
            lines = [self._ack_line(subscription) for subscription in listening]
            try:
                async with asyncio.TaskGroup() as tasks:
                    for name, subscription, line in zip(names, listening, lines, strict=True):
                        handling = self._listen(subscription, line, name in SHARED)
                        tasks.create_task(handling, name=f"ingest-{name}")
                    tasks.create_task(self._log_stats(), name="ingest-stats")
            finally:
                await self._leave(lines)

    def _ack_line(self, subscription: Subscription) -> AckLine:
        renew = partial(subscription.renew, "Kafka did not take what it delivered")
        return AckLine(renew, emptied=self._emptied.set)

    async def _leave(self, lines: list[AckLine]) -> None:
        """Before the connections close: the packed fixes flushed and the batches handled
        acknowledged as Kafka takes them, for at most :data:`LEAVE_WITHIN_S`, so that an
        ingest stopped in order leaves the broker little that Kafka already has."""
        await self.flush()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LEAVE_WITHIN_S):
                while any(lines):
                    self._emptied.clear()
                    await self._emptied.wait()

    def _subscription(self, name: str) -> Subscription:
        topics, within = self._topics(name), self._start_timeout_s
        access = access_of(self._s)
        return Subscription(
            access.host,
            access.port,
            topics,
            name=f"ingest of {name}",
            start_timeout_s=within,
            max_publish_bytes=self._limits.max_publish_bytes,
            inbox_capacity=INBOX_CAPACITY,
            session=client_id(self._s, name),
            access=access,
        )

    async def _listen(self, subscription: Subscription, line: AckLine, backpressure: bool) -> None:
        """Handle what comes, a batch at a time, acknowledging each batch once Kafka has all
        it produced (:mod:`ingest.acks`); positions and telemetry wait while too many records
        are undelivered (device events never do)."""
        async with aclosing(subscription.batches(BATCH)) as batches:
            async for batch in batches:
                receipt = line.receipt(subscription.acknowledgement(batch))
                try:
                    await self._take(batch, receipt)
                except BaseException:
                    line.forget(receipt)  # the broker sends it again
                    raise
                receipt.handled()
                if backpressure and self._in_flight > MAX_IN_FLIGHT:
                    await self._settle()

    async def _take(self, batch: list[Publish], receipt: Receipt) -> None:
        taken = [(m.topic, m.payload) for m in batch if not m.refused_bytes]
        if len(taken) < len(batch):
            await self._refuse_too_large([m for m in batch if m.refused_bytes], receipt)
        await self.handle_batch(taken, receipt)

    async def _refuse_too_large(self, refused: list[Publish], receipt: Receipt) -> None:
        """Dead-letter publishes the MQTT client refused for their size, unread (``too_large``,
        with the first bytes of their payload); they are acknowledged with their batch, so the
        broker does not send them again."""
        now, bound = time.time(), self._limits.max_publish_bytes
        for publish in refused:
            self.metrics.refused_bytes.inc(publish.refused_bytes)
            detail = f"a publish of {publish.refused_bytes} bytes, over {bound}"
            rejection = RejectedPayload(TOO_LARGE, detail, topic=publish.topic)
            await self._reject(rejection, publish.payload, now, receipt)

    async def handle_batch(
        self, messages: list[tuple[str, bytes]], receipt: Receipt | None = None
    ) -> None:
        """Validate messages and produce them in order, dead-lettering each bad one; what
        they produce is waited on by ``receipt`` (a receipt of its own when none is given)."""
        receipt = receipt or AckLine(_nothing).receipt(None)
        now = time.time()
        self.metrics.last_message.set(now)
        await self._registry.learn_topics(t for t, _ in messages)
        events: list[DeviceEvent] = []  # the batch's device events, delivered together
        for topic, payload in messages:
            try:
                if owntracks.is_owntracks(topic):
                    await self._owntracks(topic, payload, now, receipt)
                else:
                    await self._v1(topic, payload, now, receipt, events)
            except RejectedPayload as exc:
                await self._reject(exc, payload, now, receipt)
            except StorageError:
                raise  # a server failing ends the run, the batch unacknowledged
            except Exception as exc:  # a fault of ingest's own: the message's, not the batch's
                await self._reject(self._fault(exc, topic), payload, now, receipt)
        await self._deliver_events(events, receipt)
        for source, count in self._accepted_now.items():
            self._accepted[source].inc(count)
        self._accepted_now.clear()
        for topic, packing in self._packing.items():
            if len(packing.batches) >= FLUSH_FIXES:
                await self._flush(topic)
            elif len(packing.batches) and packing.timer is None:
                loop = asyncio.get_running_loop()
                packing.timer = loop.call_later(FLUSH_AFTER_S, self._due, topic)

    async def flush(self) -> None:
        """Produce what is packed now (fixes, telemetry samples)."""
        for topic in self._packing:
            await self._flush(topic)

    async def _flush(self, topic: str) -> None:
        """Produce what is packed for ``topic``, one message per partition (in order: one at
        a time); their batches' receipts wait on these messages."""
        packing = self._packing[topic]
        if packing.timer is not None:
            packing.timer.cancel()
            packing.timer = None
        async with packing.flushing:
            packed, carrying, packing.round = packing.batches.drain(), packing.round, Round()
            carrying.carried_by(len(packed))
            for partition, count, value in packed:
                await self._send(
                    topic, None, value, carrying.settle, partition=partition, count=count
                )

    def _due(self, topic: str) -> None:
        self._packing[topic].timer = None
        task = asyncio.ensure_future(self._flush(topic))
        self._flushes.add(task)
        task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.metrics.produce_failures.inc()
            log.error("producing packed records failed: %s", task.exception())

    async def _reject(
        self, exc: RejectedPayload, payload: bytes, now: float, receipt: Receipt
    ) -> None:
        """Dead-letter and count a refusal; its batch waits until Kafka has the letter."""
        self.metrics.rejected.labels(exc.reason).inc()
        log.debug("rejected %s: %s", exc.topic[:200], exc)
        letter = orjson.dumps(dead_letter(exc, payload, now).model_dump())
        receipt.expect()
        await self._send(keys.DEADLETTER, exc.reason, letter, receipt.settle)

    @staticmethod
    def _fault(exc: Exception, topic: str) -> RejectedPayload:
        """The dead letter's reason for a message whose handling raised what nothing expected,
        logged once with its traceback."""
        log.exception("handling a message on %s failed", topic[:200])
        detail = f"{type(exc).__name__}: {exc}"
        return RejectedPayload(INTERNAL_ERROR, detail, topic=topic)

    async def _v1(
        self, topic: str, payload: bytes, now: float, receipt: Receipt, events: list[DeviceEvent]
    ) -> None:
        r = route(topic)
        if r.kind == "loc":
            value = fast_fix(r, payload, now, self._limits)
            if value is None:
                fix = parse_location(r, topic, payload, now, self._limits)
                value = fix.model_dump_json().encode()
            await self._registry.check(r, topic)
            self._pack(keys.FIXES, r.subject, value, receipt)
            self._accepted_now["ck"] += 1
            return
        if r.kind == "tel":
            reading = fast_reading(r, payload, now, self._limits)
            if reading is not None:
                values = [reading]
            else:
                samples = parse_telemetry(r, topic, payload, now, self._limits)
                values = [s.model_dump_json().encode() for s in samples]
            check_kind((await self._registry.check(r, topic)).kind, topic)
            for value in values:
                self._pack(keys.TELEMETRY, r.subject, value, receipt)
            self.metrics.telemetry_accepted.inc(len(values))
            return
        if r.kind == "presence":
            online = parse_presence(topic, payload)
            await self._registry.check(r, topic)
            await self._presence(r.subject, r.agency, online, topic, now, receipt)
            return
        if r.kind == "status":
            await self._device_status(r, topic, payload, now, receipt)
            return
        ev = parse_device_event(r, topic, payload, now, self._limits)
        check_kind((await self._registry.check(r, topic)).kind, topic, ev.type)
        if ev.type in ACTIVITY_EVENT_TYPES:  # a home's routine: packed, as fixes are
            self._pack(keys.HOME_ACTIVITY, r.subject, ev.model_dump_json().encode(), receipt)
            self.metrics.events_accepted.inc()
        else:
            events.append(ev)  # delivered with the rest of its batch's

    async def _deliver_events(self, events: list[DeviceEvent], receipt: Receipt) -> None:
        """The batch's device events to Kafka, each device's in order, the devices at once;
        one Kafka would not take fails the batch (the broker sends it again)."""
        failed = await device_events.deliver_all(self._urgent, events)
        for _event, exc in failed:
            self._produce_failed(1, exc)
        if failed:
            receipt.fail()
        self.metrics.events_accepted.inc(len(events) - len(failed))

    def _pack(self, topic: str, key: str, value: bytes, receipt: Receipt) -> None:
        """Pack a fix (keyed by caregiver) or a telemetry sample (by device) for the next
        flush of its topic, which its batch's receipt waits on."""
        packing = self._packing[topic]
        packing.batches.add(key, value)
        packing.round.join(receipt)

    async def _device_status(
        self, r: Route, topic: str, payload: bytes, now: float, receipt: Receipt
    ) -> None:
        """A device's heartbeat, birth or last will, produced keyed by device; its batch is
        acknowledged once Kafka has it (one Kafka did not take is sent again by the broker to
        the connection made anew, a last will as any QoS 1 message)."""
        status = parse_device_status(r, topic, payload, now, self._limits)
        check_kind((await self._registry.check(r, topic)).kind, topic)
        receipt.expect()
        value = status.model_dump_json().encode()
        await self._send(keys.DEVICE_STATUS, r.subject, value, receipt.settle)
        self.metrics.device_status.labels(status.status).inc()

    async def _owntracks(self, topic: str, payload: bytes, now: float, receipt: Receipt) -> None:
        """A location from the OwnTracks app becomes its caregiver's fix, its last will a
        presence notice; the types that are no fix are counted by type (an encrypted payload
        or an undocumented type is refused: see :mod:`ingest.owntracks`)."""
        message = owntracks.parse(topic, payload, self._limits)
        if isinstance(message, owntracks.OwnTracksLastWill):
            caregiver, agency = await self._registry.owntracks_caregiver(message.device, topic)
            await self._presence(caregiver, agency, False, topic, now, receipt)
            return
        if not isinstance(message, owntracks.OwnTracksLocation):
            self.metrics.owntracks_ignored.labels(message.kind).inc()
            return
        caregiver, agency = await self._registry.owntracks_caregiver(message.device, topic)
        fix = location_fix(message.location, agency, caregiver, topic, now, self._limits)
        self._pack(keys.FIXES, fix.caregiver_id, fix.model_dump_json().encode(), receipt)
        self._accepted_now["owntracks"] += 1

    async def _presence(
        self, caregiver: str, agency: str, online: bool, topic: str, now: float, receipt: Receipt
    ) -> None:
        """Produce and count a :func:`~ingest.parse.presence_notice`; its batch waits on it."""
        notice = presence_notice(caregiver, agency, online, topic, now).model_dump_json()
        receipt.expect()
        await self._send(keys.PRESENCE, caregiver, notice.encode(), receipt.settle)
        self.metrics.presence.labels("online" if online else "offline").inc()

    async def _send(
        self,
        topic: str,
        key: str | None,
        value: bytes,
        settle: Settle,
        *,
        partition: int | None = None,
        count: int = 1,
    ) -> None:
        """Hand a message (of ``count`` records) to the producer's batches; its delivery is
        settled later, and ``settle`` told of it (failed or not). One the batches do not take
        is counted as failed at once."""
        delivered = partial(self._delivered, count, settle)
        try:
            await self._producer.send(
                topic, value, key=key, partition=partition, delivered=delivered
            )
        except StorageError as exc:
            self._produce_failed(count, exc)
            settle(True)
            return
        self._in_flight += count

    def _delivered(self, count: int, settle: Settle, failure: StorageError | None) -> None:
        self._in_flight -= count
        if self._in_flight <= MAX_IN_FLIGHT // 2:
            self._settled.set()
        if failure is not None:
            self._produce_failed(count, failure)
        settle(failure is not None)

    def _produce_failed(self, count: int, failure: StorageError) -> None:
        self.metrics.produce_failures.inc(count)
        log.error("Kafka did not take %d record(s): %s", count, failure)

    async def _settle(self) -> None:
        """Wait until half of what is in flight is delivered (or failed): backpressure."""
        self._settled.clear()
        await self._settled.wait()

    async def _log_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            log.info("ingest counters: %s", totals(self.metrics.registry))


def client_id(settings: Settings, stream: str) -> str:
    """The client id of the persistent MQTT session of this ingest process's connection for
    ``stream`` (positions, emergencies)."""
    return f"{settings.ingest_client_id or f'careknot-{settings.namespace}-ingest'}-{stream}"


async def end_sessions(settings: Settings) -> None:
    """End this ingest process's persistent MQTT sessions for good (the process retired): the
    broker forgets their subscriptions and what it queued for them."""
    for stream in STREAMS:
        access = access_of(settings)
        await end_session(access.host, access.port, client_id(settings, stream), access)


def _nothing() -> None:
    """Nothing to renew: a batch handled outside a connection's line."""


async def run(settings: Settings, streams: Streams = "all") -> int:
    """``careknot ingest``; a process of device events alone serves its metrics on
    ``CAREKNOT_EMERGENCY_INGEST_METRICS_PORT``, one of telemetry alone on
    ``CAREKNOT_TELEMETRY_INGEST_METRICS_PORT``."""
    if streams == "emergencies":
        settings = settings.model_copy(
            update={"ingest_metrics_port": settings.emergency_ingest_metrics_port}
        )
    elif streams == "telemetry":
        settings = settings.model_copy(
            update={"ingest_metrics_port": settings.telemetry_ingest_metrics_port}
        )
    if streams in SHARED and settings.flood_nice:
        os.nice(settings.flood_nice)  # the emergencies' ingest first when the CPU is short
    async with IngestService(settings) as service:
        heap.settle()
        await service.run(streams)
    return 0
