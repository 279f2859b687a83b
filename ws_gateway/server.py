"""The gateway process: the WebSocket server, its connections by recipient and the one Redis
relay (each client's conversation is ``ws_gateway.conversation``'s).

Lifecycle: ``async with Gateway(settings) as gw: await gw.run()``. Entering connects
Redis and the Kafka producer, ensures the answer topics, PSUBSCRIBEs the outbox channels, starts
the relay and the keepalive of every connection (``ws_gateway.keepalive``) in a TaskGroup and
listens; ``run`` returns on SIGINT/SIGTERM or ``stop()``;
leaving closes the listener (clients get 1001), cancels the tasks and disconnects, in that order.

Routes: ``/ws`` (the WebSocket) and the files of ``static/`` (``ws_gateway.web``'s); on the admin
port (``gateway_admin_port``, loopback by default) ``/metrics``, ``/healthz`` and ``/readyz``.
A browser page may open the WebSocket only from an allowed origin (``gateway_origins``; 403
otherwise); TLS when ``gateway_tls_cert`` is set.
WebSocket close codes: ``ws_gateway.connection``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import ssl
from collections import defaultdict
from contextlib import AsyncExitStack
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.typing import Origin

from adapters import kafka
from adapters.storage.relay import GatewayConnection
from kernel import keys
from kernel.backoff import Backoff
from kernel.errors import AuthError, RejectedInput, StorageError
from kernel.settings import Settings
from ws_gateway import keepalive
from ws_gateway.connection import (
    CLOSE_FORBIDDEN,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORISED,
    Connection,
)
from ws_gateway.conversation import Conversations
from ws_gateway.heap import keep_frozen
from ws_gateway.keepalive import keep_alive
from ws_gateway.session import MAX_FRAME_BYTES, UNAUTHORISED, Counters, head_of, resolve_recipient
from ws_gateway.web import AdminRoutes, WebRoutes

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0  # on shutdown, a client that does not answer our close is dropped
UNAVAILABLE = "unavailable"
TOKEN_IN_URL = (
    "a token in the URL is not taken (proxies and logs keep URLs): send it in the first frame"
    " or an Authorization header"
)


class Gateway:
    """The WebSocket gateway and web console server of one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.counters = Counters()
        self._routes: defaultdict[str, set[Connection]] = defaultdict(set)
        self._stack = AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Gateway:
        try:
            await self._start(self._stack)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def _start(self, stack: AsyncExitStack) -> None:
        settings = self.settings
        redis = await stack.enter_async_context(GatewayConnection.open(settings.redis_url))
        await kafka.ensure_topics(settings, [keys.OFFER_ANSWERS, keys.DEADLETTER, keys.ACCESS_LOG])
        producer = kafka.Producer(settings)
        await producer.start()
        stack.push_async_callback(producer.stop)
        self._talk = Conversations(settings, redis, producer, self.counters)
        channels = redis.outbox_channels(settings.keys, on_reconnect=self._catch_up_all)
        self._channels = await stack.enter_async_context(channels)
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        stack.callback(self._cancel_tasks)  # before the TaskGroup waits for them
        self._tasks.append(tasks.create_task(self._relay(), name="gateway-relay"))
        beat = keep_alive(self._sockets, keepalive.PING_INTERVAL_S, keepalive.PING_TIMEOUT_S)
        self._tasks.append(tasks.create_task(beat, name="gateway-keepalive"))
        self._server: Server = await stack.enter_async_context(
            serve(
                self._session,
                settings.gateway_host,
                settings.gateway_port,
                process_request=WebRoutes(settings),
                max_size=MAX_FRAME_BYTES,
                close_timeout=CLOSE_TIMEOUT_S,
                ping_interval=None,  # one keepalive for all (ws_gateway.keepalive), not a task each
                origins=allowed_origins(settings),
                ssl=tls_context(settings),
                compression=None,
                extensions=deflate(settings),
            )
        )
        self._admin: Server | None = None
        if settings.gateway_admin_port or settings.gateway_port == 0:
            admin = AdminRoutes(redis, producer, self.counters, lambda: self.connections)
            port = 0 if settings.gateway_port == 0 else settings.gateway_admin_port  # tests: free
            try:
                self._admin = await stack.enter_async_context(
                    serve(_no_websocket, settings.gateway_admin_host, port, process_request=admin)
                )
            except OSError as exc:  # worth less than the gateway it watches
                log.warning("gateway metrics and health not served on port %d: %s", port, exc)

    def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()

    @property
    def port(self) -> int:
        """The port actually bound (useful with ``gateway_port=0``)."""
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def admin_port(self) -> int | None:
        """The admin port actually bound (with ``gateway_port=0``, a free one too)."""
        if self._admin is None:
            return None
        return int(next(iter(self._admin.sockets)).getsockname()[1])

    async def run(self) -> None:
        """Serve until SIGINT/SIGTERM or :meth:`stop`."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        try:
            await self._stopping.wait()
        finally:
            for sig in signals:
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    def stop(self) -> None:
        self._stopping.set()

    def _sockets(self) -> list[ServerConnection]:
        return [conn.ws for conns in self._routes.values() for conn in conns]

    @property
    def connections(self) -> int:
        return sum(len(conns) for conns in self._routes.values())

    def connections_of(self, recipient: str) -> tuple[Connection, ...]:
        """The open connections reading ``recipient``'s messages."""
        return tuple(self._routes.get(recipient, ()))

    # ------------------------------------------------------------ relay

    async def _relay(self) -> None:
        """Route every outbox message to the connections of its recipient; resubscribe after
        losing Redis, backing off while it stays lost. Each new subscription catches every
        client up on what was published meanwhile (or resyncs it, when Redis lost the streams
        too): :meth:`_catch_up_all`, called by the subscription."""
        backoff = Backoff(first=0.2, cap=5.0)
        while True:
            try:
                await self._channels.resubscribe()
                backoff.reset()
                async for recipient, data in self._channels.messages():
                    self._route(recipient, data)
            except StorageError as exc:
                delay = backoff.next()
                log.warning("relay lost Redis (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    def _catch_up_all(self) -> None:
        """Every connection catches up on what the relay missed, in its own queue's order
        (after what it queued before the loss, before what comes after)."""
        for conns in self._routes.values():
            for conn in conns:
                if not conn.catch_up():
                    self.counters.slow_closed += 1

    def _route(self, recipient: str, data: bytes) -> None:
        conns = self._routes.get(recipient)
        if not conns:
            return
        seq, epoch = head_of(data)
        for conn in conns:
            if not conn.offer(seq, epoch, data):
                self.counters.slow_closed += 1
                log.warning("closing slow client %s (queue full)", conn.recipient)

    # ------------------------------------------------------------ WebSocket sessions

    async def _session(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        try:
            if _param(query, "token") is not None:
                raise AuthError(TOKEN_IN_URL)
            claims = await self._talk.authenticate(ws, bearer(ws.request.headers))
            recipient = resolve_recipient(claims, _param(query, "patient"))
            await self._talk.record_access(claims, recipient, "connected")
        except AuthError as exc:
            await self._talk.refuse(ws, RejectedInput(UNAUTHORISED, str(exc)), CLOSE_UNAUTHORISED)
            return
        except RejectedInput as exc:
            await self._talk.refuse(ws, exc, CLOSE_FORBIDDEN)
            return
        except StorageError as exc:
            log.warning("cannot authenticate a client now: %s", exc)
            unavailable = RejectedInput(UNAVAILABLE, "try again")
            await self._talk.refuse(ws, unavailable, CLOSE_TRY_AGAIN_LATER)
            return
        except ConnectionClosed:
            return
        forget_handshake(ws)
        conn = Connection(ws, claims, recipient, self._talk)
        self._routes[recipient].add(conn)  # queue live messages before reading seq_now
        try:
            await self._talk.converse(conn, _param(query, "last_seq"), _param(query, "epoch"))
        except ConnectionClosed:
            pass
        finally:
            self._routes[recipient].discard(conn)
            if not self._routes[recipient]:
                del self._routes[recipient]


def deflate(settings: Settings) -> list[ServerExtensionFactory]:
    """permessage-deflate when ``gateway_compression`` is on, as websockets' default (12-bit
    windows, memLevel 5) but without context takeover either way: each message is compressed
    and decompressed on its own, so an idle connection keeps no zlib state (a compressor and a
    decompressor kept between messages cost ~45 KiB a connection)."""
    if not settings.gateway_compression:
        return []
    return [
        ServerPerMessageDeflateFactory(
            server_no_context_takeover=True,
            client_no_context_takeover=True,
            server_max_window_bits=12,
            client_max_window_bits=12,
            compress_settings={"memLevel": 5},
        )
    ]


def forget_handshake(ws: ServerConnection) -> None:
    """Drop the handshake's headers, read by now: websockets keeps the request and response
    for the connection's life (~4 KiB, more from a browser)."""
    if ws.request is not None:
        ws.request.headers.clear()
    if ws.response is not None:
        ws.response.headers.clear()


def bearer(headers: Headers) -> str | None:
    """The token of an ``Authorization: Bearer`` header, if the client sent one."""
    scheme, _, token = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def allowed_origins(settings: Settings) -> list[Origin | re.Pattern[str] | None]:
    """The web origins whose pages may open the WebSocket, and None: a client that says no
    origin is no browser (a phone app, a device), which a page cannot pose as."""
    if settings.gateway_origins:
        named = [o.strip() for o in settings.gateway_origins.split(",") if o.strip()]
        return [*(Origin(o) for o in named), None]
    hosts = "|".join(re.escape(h) for h in {"localhost", "127.0.0.1", settings.gateway_host})
    return [re.compile(rf"https?://({hosts})(:\d+)?"), None]


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.gateway_tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.gateway_tls_cert, settings.gateway_tls_key or None)
    return context


async def _no_websocket(ws: ServerConnection) -> None:
    """The admin port serves HTTP only."""
    await ws.close(CLOSE_FORBIDDEN, "no WebSocket here")


def _param(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


async def run(settings: Settings) -> int:
    """``careknot gateway``: serve until SIGINT/SIGTERM, its heap kept frozen
    (:mod:`ws_gateway.heap`)."""
    try:
        async with Gateway(settings) as gateway:
            log.info("gateway on http://%s:%d", settings.gateway_host, gateway.port)
            keeper = asyncio.create_task(keep_frozen(), name="gateway-heap")
            try:
                await gateway.run()
            finally:
                keeper.cancel()
    except (StorageError, OSError, AuthError) as exc:
        log.error("gateway cannot start: %s", exc)
        return 1
    return 0


__all__ = ["Gateway", "run"]
