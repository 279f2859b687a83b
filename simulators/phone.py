"""A WebSocket client as people use the gateway: a caregiver's phone, a family member's app,
a dispatcher's console. Used by the benchmarks and the end-to-end tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from kernel import tokens
from kernel.contracts import Role
from kernel.settings import Settings

Frame = dict[str, Any]


def token(
    settings: Settings, role: Role, sub: str, agency: str, patients: list[str] | None = None
) -> str:
    ring = tokens.keyring_of(settings)
    return tokens.mint(ring, role, sub, agency, 3600.0, time.time(), patients)


def is_type(kind: str, **fields: Any) -> Callable[[Frame], bool]:
    """A frame matcher: of type ``kind`` with these field values."""
    return lambda f: f.get("type") == kind and all(f.get(k) == v for k, v in fields.items())


class Phone:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[Frame] = []

    @classmethod
    async def open(cls, settings: Settings, tok: str, query: str = "") -> Phone:
        """A phone connected with the token ``tok`` in an ``Authorization`` header, as an app
        would (``query``: ``&patient=...`` and the like)."""
        url = f"ws://{settings.gateway_host}:{settings.gateway_port}/ws?{query.lstrip('&')}"
        phone = cls(await connect(url, additional_headers={"Authorization": f"Bearer {tok}"}))
        await phone.expect(is_type("hello"), within=5)
        return phone

    async def send(self, frame: Frame) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def expect(self, match: Callable[[Frame], bool], within: float = 30.0) -> Frame:
        """The next frame that matches (frames before it are kept in ``seen``)."""
        async with asyncio.timeout(within):
            while True:
                frame: Frame = orjson.loads(await self.ws.recv())
                self.seen.append(frame)
                if match(frame):
                    return frame

    async def close(self) -> None:
        await self.ws.close()
