"""A Faust Kafka transport whose consumer fetch does not wait long for data.

Faust's aiokafka driver fixes ``fetch_max_wait_ms`` at 1500 ms. A broker that holds a fetch
until that deadline when little data flows (tansu does) then adds up to 1.5 s to every
emergency; this transport sets it from the app's ``fetch_max_wait_ms`` instead
(``CAREKNOT_KAFKA_FETCH_MAX_WAIT_MS``, ``CAREKNOT_FIXES_FETCH_MAX_WAIT_MS``).

It reaches into two private names, pinned with their libraries in pyproject.toml and checked by
tests/adapters/test_private_names.py: faust's ``AIOKafkaConsumerThread._create_worker_consumer``
and aiokafka's ``AIOKafkaConsumer._fetch_max_wait_ms``.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport

DEFAULT_FETCH_MAX_WAIT_MS = 25


class LowLatencyConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", DEFAULT_FETCH_MAX_WAIT_MS)
        consumer._fetch_max_wait_ms = wait_ms  # read by aiokafka when the consumer starts
        return consumer


class LowLatencyConsumer(Consumer):
    def _new_consumer_thread(self) -> LowLatencyConsumerThread:
        return LowLatencyConsumerThread(self, loop=self.loop, beacon=self.beacon)


class LowLatencyTransport(Transport):
    Consumer = LowLatencyConsumer
