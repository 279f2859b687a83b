"""The ingest service: an aiomqtt subscriber that validates and produces to Kafka.

``async with IngestService(settings) as svc: await svc.run()``. Several ingest processes share
the load through an MQTT 5 shared subscription. It reads the v1 topics and, unchanged, what the
OwnTracks app publishes (``owntracks/{user}/{device}``). Bad input goes to the dead-letter topic
with its reason and is counted; it never stops the loop. Counters are served in the Prometheus
text format on ``CAREKNOT_INGEST_METRICS_PORT`` (see :mod:`careknot.metrics`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType

import aiomqtt
import orjson
from aiokafka import AIOKafkaProducer

from careknot import kafka
from careknot.errors import RejectedPayload
from careknot.metrics import IngestMetrics, serve, totals
from careknot.settings import Settings
from careknot.storage.postgres import Database
from ingest import owntracks
from ingest.parse import (
    Limits,
    dead_letter,
    location_fix,
    parse_device_event,
    parse_location,
    route,
)
from ingest.registry import Registry

log = logging.getLogger(__name__)

SUBSCRIPTIONS = ("ck/+/cg/+/loc", "ck/+/dev/+/evt", owntracks.SUBSCRIPTION)
STATS_EVERY_S = 30.0


class IngestService:
    def __init__(self, settings: Settings) -> None:
        self._s = settings
        self._limits = Limits(settings.max_payload_bytes, settings.max_clock_skew_s)
        self._db = Database(settings, max_size=4)
        self._producer: AIOKafkaProducer = kafka.producer(settings)
        self._registry = Registry(self._db)
        self.metrics = IngestMetrics()
        self.subscribed = asyncio.Event()
        self._metrics_server: asyncio.Server | None = None

    async def __aenter__(self) -> IngestService:
        await kafka.ensure_topics(self._s, kafka.TOPICS)
        await self._db.__aenter__()
        await self._producer.start()
        self._metrics_server = await serve(self.metrics.registry, self._s.ingest_metrics_port)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._metrics_server is not None:
            self._metrics_server.close()
            await self._metrics_server.wait_closed()
        await self._producer.stop()
        await self._db.__aexit__(et, e, tb)

    @property
    def metrics_port(self) -> int | None:
        """The port metrics are served on, or None when they are not."""
        if self._metrics_server is None or not self._metrics_server.sockets:
            return None
        return int(self._metrics_server.sockets[0].getsockname()[1])

    def _topics(self) -> list[str]:
        if self._s.mqtt_shared_subscriptions:
            group = self._s.mqtt_share_group or f"careknot-{self._s.namespace}"
            return [f"$share/{group}/{t}" for t in SUBSCRIPTIONS]
        return list(SUBSCRIPTIONS)

    async def run(self) -> None:
        protocol = (
            aiomqtt.ProtocolVersion.V5
            if self._s.mqtt_shared_subscriptions
            else aiomqtt.ProtocolVersion.V311
        )
        async with (
            aiomqtt.Client(self._s.mqtt_host, self._s.mqtt_port, protocol=protocol) as client,
            asyncio.TaskGroup() as tasks,
        ):
            for topic in self._topics():
                await client.subscribe(topic, qos=1)
            tasks.create_task(self._log_stats(), name="ingest-stats")
            log.info("ingest subscribed to %s", self._topics())
            self.subscribed.set()
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                await self.handle(message.topic.value, payload)

    async def handle(self, topic: str, payload: bytes) -> None:
        """Validate one message and produce it, or dead-letter it with its reason."""
        now = time.time()
        self.metrics.last_message.set(now)
        try:
            if owntracks.is_owntracks(topic):
                await self._owntracks(topic, payload, now)
            else:
                await self._v1(topic, payload, now)
        except RejectedPayload as exc:
            self.metrics.rejected.labels(exc.reason).inc()
            log.debug("rejected %s: %s", topic[:200], exc)
            letter = dead_letter(exc, payload, now)
            await self._send("deadletter", exc.reason, orjson.dumps(letter.model_dump()))

    async def _v1(self, topic: str, payload: bytes, now: float) -> None:
        r = route(topic)
        if r.kind == "loc":
            fix = parse_location(r, topic, payload, now, self._limits)
            await self._registry.check(r, topic)
            await self._send("fixes", fix.caregiver_id, fix.model_dump_json().encode())
            self.metrics.fixes_accepted.labels("ck").inc()
            return
        ev = parse_device_event(r, topic, payload, now, self._limits)
        await self._registry.check(r, topic)
        value = ev.model_dump_json().encode()
        await self._producer.send_and_wait(
            self._s.topic("device-events"), value, key=ev.device_id.encode()
        )
        self.metrics.events_accepted.inc()

    async def _owntracks(self, topic: str, payload: bytes, now: float) -> None:
        """A location from the OwnTracks app becomes its caregiver's fix; other types
        (its last will among them) are counted by type."""
        message = owntracks.parse(topic, payload, self._limits)
        if not isinstance(message, owntracks.OwnTracksLocation):
            kind = "lwt" if isinstance(message, owntracks.OwnTracksLastWill) else message.kind
            self.metrics.owntracks_ignored.labels(kind).inc()
            return
        caregiver, agency = await self._registry.owntracks_caregiver(message.device, topic)
        fix = location_fix(message.location, agency, caregiver, topic, now, self._limits)
        await self._send("fixes", fix.caregiver_id, fix.model_dump_json().encode())
        self.metrics.fixes_accepted.labels("owntracks").inc()

    async def _send(self, topic: str, key: str, value: bytes) -> None:
        delivery = await self._producer.send(self._s.topic(topic), value, key=key.encode())
        delivery.add_done_callback(self._delivered)

    def _delivered(self, delivery: asyncio.Future[object]) -> None:
        if delivery.cancelled() or delivery.exception() is not None:
            self.metrics.produce_failures.inc()
            log.error(
                "Kafka delivery failed: %s",
                "cancelled" if delivery.cancelled() else delivery.exception(),
            )

    async def _log_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            log.info("ingest counters: %s", totals(self.metrics.registry))


async def run(settings: Settings) -> int:
    async with IngestService(settings) as service:
        await service.run()
    return 0
