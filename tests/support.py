"""Helpers for tests that talk to the system the way a device and a person would."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

from kernel.waiting import poll_until as wait_for
from simulators.phone import Frame, Phone, is_type, token

__all__ = [
    "Frame",
    "Phone",
    "free_port",
    "is_type",
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
