"""Helpers for tests that talk to the system the way a device and a person would."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from kernel.contracts import FixEvent
from kernel.settings import Settings
from kernel.waiting import poll_until as wait_for
from simulators.phone import Frame, Phone, is_type, token

__all__ = [
    "Frame",
    "Phone",
    "fix_event",
    "free_port",
    "http_get",
    "is_type",
    "kafka_reader",
    "processes_in",
    "scrape",
    "token",
    "wait_for",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def processes_in(namespace: str) -> list[int]:
    """Pids of live processes started with ``CAREKNOT_NAMESPACE=namespace`` (Linux /proc)."""
    marker = f"CAREKNOT_NAMESPACE={namespace}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
    return found


async def scrape(port: int) -> str:
    """The whole HTTP response to ``GET /metrics`` on a local port."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
    await writer.drain()
    response = await reader.read()
    writer.close()
    return response.decode()


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """The status and body of ``GET path`` on a local port."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def fix_event(caregiver: str, ts: float) -> FixEvent:
    """A fix of agency ``a1`` in Leeds, received half a second after it was taken."""
    return FixEvent(
        event_id=f"{caregiver}:{ts}",
        agency_id="a1",
        caregiver_id=caregiver,
        lat=53.8,
        lon=-1.55,
        ts=ts,
        received_at=ts + 0.5,
    )


@contextlib.asynccontextmanager
async def kafka_reader(settings: Settings, *names: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer of the namespace's logical topics ``names``, from their first records."""
    topics = [settings.keys.topic(name) for name in names]
    reader = AIOKafkaConsumer(
        *topics, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await reader.start()
    try:
        yield reader
    finally:
        await reader.stop()
