"""The gateway's plain HTTP: beside the WebSocket, the web pages' files from ``static/`` (the
dispatchers' console at ``/``, a family's page at ``/family``), Leaflet's from the console's npm
folder (``/vendor/leaflet/``) and the pages' settings (``/config.json``: the map's tiles, and
``api_url``, the HTTP API the console reads homes and visits from) (:class:`WebRoutes`); on the
admin port, ``/healthz`` and ``/readyz`` (Redis and Kafka answer) and ``/metrics`` (Prometheus
text) (:class:`AdminRoutes`).

``/readyz`` is whether to send this gateway clients, ``/healthz`` the same checks for what
already asks it: both ask Redis and Kafka at once, each within
:data:`kernel.waiting.HEALTH_TIMEOUT_S`, and answer 200 when both answer, else 503, the body
naming which does not (``"down": ["redis"]``) beside a flag per server."""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote, urlsplit

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from adapters.kafka import Producer
from adapters.storage.relay import GatewayConnection
from kernel.settings import Settings
from kernel.waiting import answers
from ws_gateway.session import Counters

STATIC_DIR = Path(__file__).resolve().with_name("static")
LEAFLET_DIR = Path(__file__).resolve().parents[1] / "console" / "node_modules" / "leaflet" / "dist"
"""Leaflet as npm installed it (``scripts/bootstrap``: ``npm ci`` in ``console/``)."""
VENDOR = {"/vendor/leaflet/": LEAFLET_DIR}
"""Paths served from a library's folder."""
PAGES = {"/family": "family.html"}
"""Pages by a path of their own."""
WEBSOCKET_PATH = "/ws"
CHECKS = {"/healthz": "ok", "/readyz": "ready"}
"""The paths that check the servers, and the name of their verdict in the body."""
ANY_HOST = ("", "0.0.0.0", "::")
"""``api_host`` values that listen on every interface: no host a page could be sent to."""
_UTF8_TYPES = frozenset(("application/javascript", "application/json", "image/svg+xml"))


class WebRoutes:
    """``process_request`` of the WebSocket server: answers every path but ``/ws`` itself, with
    the pages' files and their settings."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._config = {
            "tile_url": settings.console_tile_url,
            "tile_attribution": settings.console_tile_attribution,
        }

    async def __call__(self, ws: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == WEBSOCKET_PATH:
            return None
        if path == "/config.json":
            api = api_url(self._settings, request.headers.get("Host", ""))
            return response(HTTPStatus.OK, orjson.dumps({**self._config, "api_url": api}))
        for prefix, folder in VENDOR.items():
            if path.startswith(prefix):
                return await static(path.removeprefix(prefix), folder)
        return await static(PAGES.get(path, path))


def api_url(settings: Settings, host_header: str) -> str:
    """The HTTP API's base URL as a page reaches it: ``public_api_url`` when set (a proxy in
    front); else ``api_host``'s, or, when the API listens on every interface, the host the page
    itself was asked of (its ``Host``), at ``api_port``."""
    if settings.public_api_url:
        return settings.public_api_url.rstrip("/")
    host = settings.api_host
    if host in ANY_HOST:
        host = urlsplit(f"//{host_header}").hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}"


class AdminRoutes:
    """``process_request`` of the admin port: health and metrics, nothing else."""

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
        if path in CHECKS:
            return await self._checked(CHECKS[path])
        if path == "/metrics":
            text = self._counters.render(self._connections()).encode()
            return response(HTTPStatus.OK, text, "text/plain; version=0.0.4; charset=utf-8")
        return response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    async def _checked(self, verdict: str) -> Response:
        """Whether Redis and Kafka answer (asked at once): 200, else 503 naming which not."""
        redis, kafka = await asyncio.gather(
            answers(self._redis.ping()), answers(self._producer.ping())
        )
        checks = {"redis": redis, "kafka": kafka}
        down = [name for name, up in checks.items() if not up]
        body = orjson.dumps({verdict: not down, **checks, "down": down})
        return response(HTTPStatus.SERVICE_UNAVAILABLE if down else HTTPStatus.OK, body)


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


async def static(path: str, folder: Path | None = None) -> Response:
    """A file of ``folder`` (``static/``) by name (``/`` is ``index.html``); never anything
    outside it."""
    root = STATIC_DIR if folder is None else folder
    name = unquote(path).lstrip("/") or "index.html"
    file = root / name.replace("\x00", "")
    if not file.resolve().is_relative_to(root) or not file.is_file():
        return response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
    body = await asyncio.to_thread(file.read_bytes)
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type in _UTF8_TYPES:
        content_type += "; charset=utf-8"
    return response(HTTPStatus.OK, body, content_type)
