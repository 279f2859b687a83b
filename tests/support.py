"""Helpers for tests that talk to the system the way a device and a person would."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from kernel.contracts import FixEvent, Role
from kernel.settings import Settings
from kernel.waiting import poll_until as wait_for
from simulators.phone import Frame, Phone, is_type, token

__all__ = [
    "Frame",
    "Inbox",
    "Phone",
    "bearer",
    "fix_event",
    "free_port",
    "http_get",
    "is_type",
    "kafka_reader",
    "own_gateway",
    "processes_in",
    "scrape",
    "token",
    "wait_for",
]


def bearer(
    settings: Settings, role: Role, sub: str, agency: str, patients: list[str] | None = None
) -> dict[str, str]:
    """The ``Authorization`` header of an access token minted with the settings' key, as the
    HTTP API takes it."""
    return {"Authorization": f"Bearer {token(settings, role, sub, agency, patients)}"}


def own_gateway(stack_settings: Settings, **changes: object) -> Settings:
    """The session's servers with a namespace of the caller's own and a gateway on a free
    port of the loopback (its admin port free too), ``changes`` made besides."""
    own = {"namespace": f"t{secrets.token_hex(4)}", "gateway_host": "127.0.0.1", "gateway_port": 0}
    return stack_settings.model_copy(update={**own, **changes})


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


class Inbox:
    """An HTTP endpoint that keeps every JSON body POSTed to it, by path; it answers 200, or
    500 to the paths it is told are ``failing`` (keeping their bodies all the same)."""

    def __init__(self, failing: Iterable[str] = ()) -> None:
        self.failing = {f"/{path}" for path in failing}
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.server: asyncio.Server | None = None
        self._posted = asyncio.Condition()

    async def __aenter__(self) -> Inbox:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def url(self, path: str) -> str:
        assert self.server is not None
        return f"json://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/{path}"

    def to(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in self.posts if p == f"/{path}"]

    async def expect(
        self, path: str, match: Callable[[dict[str, Any]], bool], within: float = 30.0
    ) -> dict[str, Any]:
        """The first body POSTed to ``path`` that matches, once it has come."""
        async with asyncio.timeout(within), self._posted:
            while True:
                for body in self.to(path):
                    if match(body):
                        return body
                await self._posted.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1].decode()
        length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
        self.posts.append((path, orjson.loads(await reader.readexactly(length))))
        async with self._posted:
            self._posted.notify_all()
        status = b"500 Internal Server Error" if path in self.failing else b"200 OK"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()
