"""Helpers for tests that talk to the system the way a device and a person would."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from websockets.asyncio.client import ClientConnection, connect

from careknot import tokens
from careknot.contracts import Role
from careknot.settings import Settings

Frame = dict[str, Any]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token(
    settings: Settings, role: Role, sub: str, agency: str, patients: list[str] | None = None
) -> str:
    claims = tokens.Claims(
        role=role, sub=sub, agency=agency, exp=time.time() + 3600, patients=patients or []
    )
    return tokens.issue(claims, settings.token_secret)


async def wait_for(probe: Callable[[], Awaitable[T | None]], within: float, what: str) -> T:
    """Poll ``probe`` until it returns something, or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.05)


class Phone:
    """A WebSocket client: a caregiver's phone, a family member's app, a dispatcher's console."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[Frame] = []

    @classmethod
    async def open(cls, settings: Settings, tok: str, query: str = "") -> Phone:
        url = f"ws://{settings.gateway_host}:{settings.gateway_port}/ws?token={tok}{query}"
        phone = cls(await connect(url))
        await phone.expect(lambda f: f.get("type") == "hello", within=5)
        return phone

    async def send(self, frame: Frame) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def expect(self, match: Callable[[Frame], bool], within: float = 10.0) -> Frame:
        """The next frame that matches (frames before it are kept in ``seen``)."""
        async with asyncio.timeout(within):
            while True:
                frame: Frame = orjson.loads(await self.ws.recv())
                self.seen.append(frame)
                if match(frame):
                    return frame

    async def close(self) -> None:
        await self.ws.close()
