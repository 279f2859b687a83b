"""Kafka plumbing shared by every service: the topic list, topic creation, the producer.

Topics are named by :meth:`kernel.keys.Keys.topic` from the logical names in
:data:`kernel.keys.TOPICS`; creating them is idempotent, so each service ensures the ones it writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from kernel.errors import StorageError
from kernel.settings import Settings

log = logging.getLogger(__name__)


async def ensure_topics(settings: Settings, names: Iterable[str]) -> None:
    """Create the missing topics among the logical ``names``, ``kafka_partitions`` each.

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
            [NewTopic(name, settings.kafka_partitions, 1) for name in missing]
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


def _topic_errors(response: object) -> list[tuple[str, int, str | None]]:
    topic_errors = response.to_object()["topic_errors"]  # type: ignore[attr-defined]
    return [(e["topic"], e["error_code"], e["error_message"]) for e in topic_errors]


def producer(settings: Settings) -> AIOKafkaProducer:
    """A producer of ``bytes`` values, tuned for low latency (the caller starts and stops it)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        linger_ms=2,
        acks=1,
    )
