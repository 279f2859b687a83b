"""A dispatch worker of the test's own (``careknot worker --role dispatch``, the ``worker``
fixture) in the module's namespace, values put in order on one partition of a Kafka topic
(:func:`produce`), and the dead-letter topic read back (:func:`dead_letters`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from careknot.up import settings_env
from kernel import keys
from kernel.settings import Settings
from kernel.waiting import poll_until
from tests.support import free_port

WITHIN_S = 90.0
STOP_WITHIN_S = 60.0


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A dispatch worker (``careknot worker --role dispatch``) in the module's namespace."""
    own = settings.model_copy(
        update={"worker_datadir": str(tmp_path / "worker"), "dispatch_metrics_port": free_port()}
    )
    argv = [sys.executable, "-m", "careknot.cli", "worker", "--role", "dispatch"]
    with (tmp_path / "worker.log").open("wb") as log_file:
        proc = subprocess.Popen(
            argv, env={**os.environ, **settings_env(own)}, stdout=log_file, stderr=log_file
        )
    try:
        yield own
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sys.stderr.write((tmp_path / "worker.log").read_text(errors="replace")[-4000:])


async def produce(
    settings: Settings, key: str, values: list[bytes | None], name: str = keys.DEVICE_EVENTS
) -> None:
    """Values in order on one partition (one key) of the logical topic ``name``."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for value in values:
            topic = settings.keys.topic(name)
            await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()


async def dead_letters(settings: Settings, wanted: int) -> list[dict[str, Any]]:
    """The first ``wanted`` records of the dead-letter topic."""
    consumer = AIOKafkaConsumer(
        settings.keys.topic(keys.DEADLETTER),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    letters: list[dict[str, Any]] = []

    async def enough() -> list[dict[str, Any]] | None:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            letters.extend(orjson.loads(r.value) for r in records if r.value)
        return letters if len(letters) >= wanted else None

    try:
        return await poll_until(enough, WITHIN_S, f"{wanted} dead letters")
    finally:
        await consumer.stop()
