"""Kafka for every service: topic creation, the producer, the default partitioner.

Topics are named by :meth:`kernel.keys.Keys.topic` from the logical names in
:data:`kernel.keys.TOPICS`; creating them is idempotent, so each service ensures the ones it writes.
:class:`Producer` sends to those topics by their logical names, and :func:`default_partition`
is the partition Kafka's default partitioner gives a key; Kafka's errors come out as
:class:`~kernel.errors.StorageError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Literal

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.partitioner import murmur2

from kernel import keys
from kernel.errors import StorageError
from kernel.settings import Settings

log = logging.getLogger(__name__)


async def ensure_topics(settings: Settings, names: Iterable[str]) -> None:
    """Create the missing topics among the logical ``names``, ``kafka_partitions`` each; the
    dead-letter topic keeps its records ``deadletter_keep_days`` (``retention.ms``: a topic
    made before keeps the retention it was made with).

    Raises :class:`StorageError` when the broker cannot be reached or refuses a topic.
    """
    wanted = [settings.keys.topic(name) for name in names]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if not missing:
            return
        response = await admin.create_topics(
            [
                NewTopic(name, settings.kafka_partitions, 1, topic_configs=_configs(settings, name))
                for name in missing
            ]
        )
    except KafkaError as exc:
        raise StorageError(f"kafka: cannot create topics {wanted}: {exc}") from exc
    finally:
        await admin.close()
    for topic, code, message in _topic_errors(response):
        error = for_code(code)
        if code and error is not TopicAlreadyExistsError:  # lost a race: fine
            raise StorageError(f"kafka: cannot create topic {topic}: {message or error.__name__}")
    log.info("created Kafka topics %s", missing)


def _configs(settings: Settings, topic: str) -> dict[str, str]:
    """A topic's configuration at creation: how long the dead letters are kept."""
    if topic == settings.keys.topic(keys.DEADLETTER):
        return {"retention.ms": str(int(settings.deadletter_keep_days * 86_400_000))}
    return {}


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    topic_errors = response.to_object()["topic_errors"]  # type: ignore[attr-defined]
    return [(e["topic"], e["error_code"], e["error_message"]) for e in topic_errors]


def default_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2 of the key, as the Java client's)
    gives ``key`` among ``partitions``."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


Delivered = Callable[[StorageError | None], None]
"""Told how a message handed to :meth:`Producer.send` ended: ``None`` once Kafka has it, else
why not."""


class Producer:
    """A producer of ``bytes`` values to the namespace's topics, named by their logical names.

    The defaults suit a few urgent messages (little lingering); a producer of many lingers
    longer and fills bigger batches. ``acks``: ``1``, Kafka has a message once its partition's
    leader wrote it; ``"all"``, once every in-sync replica did (a leader lost right after does
    not lose it). Kafka's errors come out as :class:`StorageError`; a lost broker is
    reconnected by the producer itself.

    No producer is idempotent (``enable_idempotence``): aiokafka asks for a producer id with
    InitProducerId v0, which tansu (0.6, the development and test Kafka) refuses, as its
    storage wants the producer id and epoch of v3 and later; a message sent again after a lost
    answer may so be written twice, which every consumer takes as once (idempotent on the
    event's key).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        linger_ms: int = 2,
        max_batch_bytes: int = 16 * 1024,
        acks: Literal[1, "all"] = 1,
    ) -> None:
        self._keys = settings.keys
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            linger_ms=linger_ms,
            max_batch_size=max_batch_bytes,
            acks=acks,
        )

    async def start(self) -> None:
        try:
            await self._producer.start()
        except KafkaError as exc:
            raise StorageError(f"kafka: cannot start a producer: {exc}") from exc

    async def stop(self) -> None:
        """Deliver what is in flight (or fail it), then close."""
        try:
            await self._producer.stop()
        except KafkaError as exc:
            raise StorageError(f"kafka: stopping a producer: {exc}") from exc

    async def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has."""
        try:
            return len(await self._producer.partitions_for(self._keys.topic(topic)))
        except KafkaError as exc:
            raise StorageError(f"kafka: no partitions of {topic}: {exc}") from exc

    async def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: str | None = None,
        partition: int | None = None,
        delivered: Delivered,
    ) -> None:
        """Hand a message to the producer's batches without waiting for its delivery, of which
        ``delivered`` is told; raises :class:`StorageError` when the batches do not take it
        (no metadata for the topic, or batches full for longer than the request timeout)."""
        try:
            delivery = await self._producer.send(
                self._keys.topic(topic),
                value,
                key=None if key is None else key.encode(),
                partition=partition,
            )
        except KafkaError as exc:
            raise StorageError(f"kafka: cannot send to {topic}: {exc}") from exc
        delivery.add_done_callback(partial(_settled, delivered))

    async def send_all(
        self, topic: str, messages: Sequence[tuple[str | None, bytes]]
    ) -> list[StorageError | None]:
        """Hand every message (key, value) to the producer's batches, then wait until each is
        settled: for each, None once Kafka has it, else why not (nothing is raised)."""
        loop = asyncio.get_running_loop()
        settled: list[asyncio.Future[StorageError | None]] = []
        for key, value in messages:
            outcome: asyncio.Future[StorageError | None] = loop.create_future()
            try:
                await self.send(topic, value, key=key, delivered=outcome.set_result)
            except StorageError as exc:
                outcome.set_result(exc)
            settled.append(outcome)
        return list(await asyncio.gather(*settled))

    async def send_and_wait(
        self,
        topic: str,
        value: bytes,
        *,
        key: str | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Send a message (with Kafka record ``headers``, if any) and wait until Kafka has it."""
        try:
            await self._producer.send_and_wait(
                self._keys.topic(topic),
                value,
                key=None if key is None else key.encode(),
                headers=list(headers) or None,
            )
        except KafkaError as exc:
            raise StorageError(f"kafka: cannot deliver to {topic}: {exc}") from exc

    async def ping(self) -> None:
        """Ask the brokers for the cluster's metadata: :class:`StorageError` if none answers."""
        try:
            await self._producer.client.fetch_all_metadata()
        except KafkaError as exc:
            raise StorageError(f"kafka: the brokers do not answer: {exc}") from exc


def _settled(delivered: Delivered, delivery: asyncio.Future[object]) -> None:
    if delivery.cancelled():
        delivered(StorageError("kafka: delivery cancelled"))
    elif (exc := delivery.exception()) is not None:
        failed = StorageError(f"kafka: delivery failed: {exc}")
        failed.__cause__ = exc
        delivered(failed)
    else:
        delivered(None)
