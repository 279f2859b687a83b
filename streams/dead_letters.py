"""Kafka values an agent could not take, parked on the dead-letter topic and counted."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable

import orjson

from adapters import kafka
from adapters.kafka import Producer
from adapters.metrics import DeadLetterMetrics
from kernel import keys
from kernel.contracts import DeadLetter
from kernel.errors import StorageError
from kernel.settings import Settings
from streams.decoding import Refused

log = logging.getLogger(__name__)

PAYLOAD_CHARS = 2048


def dead_letter(refused: Refused, source: str, now: float) -> DeadLetter:
    """The dead letter of a value refused on the Kafka topic ``source``."""
    value = refused.value or b""
    return DeadLetter(
        reason=refused.reason,
        detail=refused.detail[:500],
        source=source,
        payload=value[:PAYLOAD_CHARS].decode("utf-8", "replace"),
        received_at=now,
        truncated=len(value) > PAYLOAD_CHARS,
    )


class DeadLetters:
    """The worker's dead-letter topic: a refused value is counted, then produced; one Kafka
    does not take is logged by its reason, source and size (never its payload, which may hold
    a patient's data), and the agent goes on. The producer is made
    in :meth:`start`, inside the worker's event loop."""

    def __init__(self, settings: Settings, metrics: DeadLetterMetrics) -> None:
        self._settings = settings
        self._producer: Producer | None = None
        self.metrics = metrics

    async def start(self) -> None:
        await kafka.ensure_topics(self._settings, [keys.DEADLETTER])
        producer = Producer(self._settings)
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    @property
    def producer(self) -> Producer:
        """The worker's producer (of its dead letters, and of the commands a worker sends)."""
        if self._producer is None:
            raise StorageError("kafka: no producer yet")
        return self._producer

    async def ping(self) -> None:
        """Raises :class:`StorageError` unless Kafka answers."""
        if self._producer is None:
            raise StorageError("kafka: no producer of dead letters yet")
        await self._producer.ping()

    async def park(self, topic: str, refused: Iterable[Refused]) -> None:
        """Dead-letter values refused on the logical ``topic``: counted by reason, produced
        all at once, and waited on until Kafka has them."""
        source, now = self._settings.keys.topic(topic), time.time()
        letters = [dead_letter(r, source, now) for r in refused]
        for reason, count in Counter(letter.reason for letter in letters).items():
            self.metrics.parked.labels(topic, reason).inc(count)
        await self._send(letters)

    async def _send(self, letters: list[DeadLetter]) -> None:
        values = [orjson.dumps(letter.model_dump(mode="json")) for letter in letters]
        if self._producer is None:
            missing = StorageError("kafka: no producer of dead letters")
            failures: list[StorageError | None] = [missing] * len(values)
        else:
            keyed = [(letter.reason, v) for letter, v in zip(letters, values, strict=True)]
            failures = await self._producer.send_all(keys.DEADLETTER, keyed)
        for letter, failure in zip(letters, failures, strict=True):
            if failure is not None:
                self.metrics.failed.inc()
                log.error(
                    "dead letter not produced (%s): %s from %s, %d payload characters",
                    failure,
                    letter.reason,
                    letter.source,
                    len(letter.payload),
                )
