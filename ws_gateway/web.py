"""The gateway's plain HTTP beside the WebSocket: ``/healthz`` (Redis and Kafka answer),
``/metrics`` (Prometheus text) and the web console's files from ``static/``."""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from adapters.kafka import Producer
from adapters.storage.relay import GatewayConnection
from kernel.errors import StorageError
from ws_gateway.session import Counters

STATIC_DIR = Path(__file__).resolve().with_name("static")
HEALTH_TIMEOUT_S = 2.0
WEBSOCKET_PATH = "/ws"
_UTF8_TYPES = frozenset(("application/javascript", "application/json", "image/svg+xml"))


class WebRoutes:
    """``process_request`` of the WebSocket server: answers every path but ``/ws`` itself."""

    def __init__(
        self,
        redis: GatewayConnection,
        producer: Producer,
        counters: Counters,
        connections: Callable[[], int],
    ) -> None:
        self._redis, self._producer = redis, producer
        self._counters, self._connections = counters, connections

    async def __call__(self, ws: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == WEBSOCKET_PATH:
            return None
        if path == "/healthz":
            checks = {
                "redis": await healthy(self._redis.ping()),
                "kafka": await healthy(self._producer.ping()),
            }
            ok = all(checks.values())
            body = orjson.dumps({"ok": ok, **checks})
            return response(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, body)
        if path == "/metrics":
            text = self._counters.render(self._connections()).encode()
            return response(HTTPStatus.OK, text, "text/plain; version=0.0.4; charset=utf-8")
        return await static(path)


async def healthy(ping: Awaitable[None]) -> bool:
    """Whether a server's ping succeeds within :data:`HEALTH_TIMEOUT_S`."""
    try:
        await asyncio.wait_for(ping, HEALTH_TIMEOUT_S)
    except (StorageError, TimeoutError):
        return False
    return True


def response(status: HTTPStatus, body: bytes, content_type: str = "application/json") -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


async def static(path: str) -> Response:
    """A file of ``static/`` by name (``/`` is ``index.html``); never anything outside it."""
    name = unquote(path).lstrip("/") or "index.html"
    file = STATIC_DIR / name.replace("\x00", "")
    if not file.resolve().is_relative_to(STATIC_DIR) or not file.is_file():
        return response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
    body = await asyncio.to_thread(file.read_bytes)
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type in _UTF8_TYPES:
        content_type += "; charset=utf-8"
    return response(HTTPStatus.OK, body, content_type)
