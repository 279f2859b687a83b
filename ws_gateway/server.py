"""The gateway process: HTTP routes, the WebSocket session loop and the one Redis relay.

Lifecycle: ``async with Gateway(settings) as gw: await gw.serve_forever()``. Entering connects
Redis and the Kafka producer, ensures the answer topics, PSUBSCRIBEs the outbox channels, starts
the relay in a TaskGroup and listens; ``serve_forever`` returns on SIGINT/SIGTERM or ``stop()``;
leaving closes the listener (clients get 1001), cancels the tasks and disconnects, in that order.

Routes: ``/ws`` (the WebSocket), ``/healthz``, ``/metrics`` and the files of ``static/``.
WebSocket close codes: 4401 unauthorised, 4403 forbidden, 1013 too slow to keep up,
1009 frame over 64 KiB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
import random
import signal
import time
import uuid
from collections import defaultdict
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
import redis.asyncio as aioredis
from aiokafka.errors import KafkaError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from careknot import kafka, tokens
from careknot.errors import AuthError, CareKnotError, RejectedAnswer, RejectedInput, StorageError
from careknot.settings import Settings
from careknot.storage.outbox import Outbox
from careknot.tokens import Claims
from ws_gateway.answers import ANSWER_TOPIC, DEADLETTER_TOPIC, AnswerDesk
from ws_gateway.session import (
    MALFORMED,
    MAX_FRAME_BYTES,
    PONG,
    TOO_LARGE,
    UNAUTHORISED,
    Answer,
    Assign,
    Auth,
    Counters,
    Delivered,
    Ping,
    Resolve,
    Resume,
    ack_frame,
    command_ack_frame,
    decide_command,
    error_frame,
    hello_frame,
    parse_frame,
    resolve_recipient,
    seq_of,
)

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().with_name("static")
AUTH_TIMEOUT_S = 5.0
QUEUE_SIZE = 1024
HEALTH_TIMEOUT_S = 2.0
CLOSE_TIMEOUT_S = 2.0  # on shutdown, a client that does not answer our close is dropped
CLOSE_UNAUTHORISED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_TOO_BIG = 1009
UNAVAILABLE = "unavailable"


@dataclass(eq=False)
class Connection:
    """One client's live state: its recipient, its queue of relayed messages, what it got."""

    ws: ServerConnection
    claims: Claims
    recipient: str
    queue: asyncio.Queue[tuple[int, bytes]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE)
    )
    delivered: Delivered = field(default_factory=Delivered)
    sending: asyncio.Lock = field(default_factory=asyncio.Lock)
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, seq: int, message: bytes) -> bool:
        """Queue a relayed message; False (once) when the queue overflows."""
        if self.overflowed.is_set():
            return True
        try:
            self.queue.put_nowait((seq, message))
        except asyncio.QueueFull:
            self.overflowed.set()
            return False
        return True


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
        self._redis = aioredis.from_url(settings.redis_url)
        stack.push_async_callback(self._redis.aclose)
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise StorageError(f"redis at {settings.redis_url}: {exc}") from exc
        await kafka.ensure_topics(settings, [ANSWER_TOPIC, DEADLETTER_TOPIC])
        self._producer = kafka.producer(settings)
        try:
            await self._producer.start()
        except KafkaError as exc:
            raise StorageError(f"kafka at {settings.kafka_bootstrap}: {exc}") from exc
        stack.push_async_callback(self._producer.stop)
        self._outbox = Outbox(self._redis, settings)
        self._answers = AnswerDesk(self._redis, self._producer, settings)
        self._pubsub = self._redis.pubsub()
        stack.push_async_callback(self._pubsub.aclose)
        await self._pubsub.psubscribe(self._outbox.channel_pattern())
        tasks = await stack.enter_async_context(asyncio.TaskGroup())
        stack.callback(self._cancel_tasks)  # before the TaskGroup waits for them
        self._tasks.append(tasks.create_task(self._relay(), name="gateway-relay"))
        self._server: Server = await stack.enter_async_context(
            serve(
                self._session,
                settings.gateway_host,
                settings.gateway_port,
                process_request=self._http,
                max_size=MAX_FRAME_BYTES,
                close_timeout=CLOSE_TIMEOUT_S,
            )
        )

    def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()

    @property
    def port(self) -> int:
        """The port actually bound (useful with ``gateway_port=0``)."""
        return int(next(iter(self._server.sockets)).getsockname()[1])

    async def serve_forever(self) -> None:
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

    @property
    def connections(self) -> int:
        return sum(len(conns) for conns in self._routes.values())

    # ------------------------------------------------------------ relay

    async def _relay(self) -> None:
        """Route every outbox message to the connections of its recipient; reconnect on loss."""
        failures = 0
        while True:
            try:
                async for message in self._pubsub.listen():
                    failures = 0
                    if message["type"] == "pmessage":
                        self._route(message["channel"], message["data"])
            except (RedisConnectionError, RedisTimeoutError) as exc:
                failures += 1
                delay = min(5.0, 0.1 * 2**failures) * random.uniform(0.5, 1.0)
                log.warning("relay lost Redis (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    def _route(self, channel: bytes, data: bytes) -> None:
        conns = self._routes.get(self._outbox.recipient_of(channel.decode()))
        if not conns:
            return
        seq = seq_of(data)
        for conn in conns:
            if not conn.offer(seq, data):
                self.counters.slow_closed += 1
                log.warning("closing slow client %s (queue full)", conn.recipient)

    # ------------------------------------------------------------ WebSocket sessions

    async def _session(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        try:
            claims = await self._authenticate(ws, _param(query, "token"))
            recipient = resolve_recipient(claims, _param(query, "patient"))
        except AuthError as exc:
            await self._refuse(ws, RejectedInput(UNAUTHORISED, str(exc)), CLOSE_UNAUTHORISED)
            return
        except RejectedInput as exc:
            await self._refuse(ws, exc, CLOSE_FORBIDDEN)
            return
        except ConnectionClosed:
            return
        conn = Connection(ws, claims, recipient)
        self._routes[recipient].add(conn)  # queue live messages before reading seq_now
        try:
            await self._converse(conn, _param(query, "last_seq"))
        except ConnectionClosed:
            pass
        finally:
            self._routes[recipient].discard(conn)
            if not self._routes[recipient]:
                del self._routes[recipient]

    async def _authenticate(self, ws: ServerConnection, token: str | None) -> Claims:
        if token is None:
            try:
                first = await asyncio.wait_for(ws.recv(), AUTH_TIMEOUT_S)
                command = parse_frame(first)
            except TimeoutError as exc:
                raise AuthError(f"no token within {AUTH_TIMEOUT_S:g} s") from exc
            except RejectedInput as exc:
                raise AuthError(f"first frame: {exc}") from exc
            if not isinstance(command, Auth):
                raise AuthError("the first frame must be auth")
            token = command.token
        return tokens.verify(token, self.settings.token_secret, time.time())

    async def _refuse(self, ws: ServerConnection, rejection: RejectedInput, code: int) -> None:
        self.counters.rejected[rejection.reason] += 1
        with contextlib.suppress(ConnectionClosed):
            await ws.send(error_frame(rejection), text=True)
            await ws.close(code, rejection.reason)

    async def _converse(self, conn: Connection, last_seq: str | None) -> None:
        seq_now = int(await self._redis.get(self.settings.key("outseq", conn.recipient)) or 0)
        await conn.ws.send(hello_frame(conn.claims, conn.recipient, seq_now), text=True)
        if last_seq is not None and last_seq.isdigit():
            await self._replay(conn, int(last_seq))
        async with asyncio.TaskGroup() as tasks:
            pump = tasks.create_task(self._pump(conn), name=f"pump {conn.recipient}")
            guard = tasks.create_task(self._guard(conn), name=f"guard {conn.recipient}")
            try:
                await self._listen(conn)
            finally:
                pump.cancel()
                guard.cancel()

    async def _pump(self, conn: Connection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                seq, message = await conn.queue.get()
                async with conn.sending:
                    if conn.delivered.take_live(seq):
                        await conn.ws.send(message, text=True)

    async def _guard(self, conn: Connection) -> None:
        await conn.overflowed.wait()
        await conn.ws.close(CLOSE_TRY_AGAIN_LATER, "too slow")

    async def _replay(self, conn: Connection, last_seq: int) -> None:
        async with conn.sending:
            kept = {seq_of(m): m for m in await self._outbox.since(conn.recipient, last_seq)}
            for seq in conn.delivered.take_replay(last_seq, kept):
                await conn.ws.send(kept[seq], text=True)

    async def _listen(self, conn: Connection) -> None:
        try:
            async for raw in conn.ws:
                await self._on_frame(conn, raw)
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == CLOSE_TOO_BIG:
                self.counters.rejected[TOO_LARGE] += 1

    async def _on_frame(self, conn: Connection, raw: str | bytes) -> None:
        try:
            command = parse_frame(raw)
            if isinstance(command, Ping):
                await conn.ws.send(PONG, text=True)
            elif isinstance(command, Resume):
                await self._replay(conn, command.last_seq)
            elif isinstance(command, Answer):
                await self._answers.forward(conn.claims, command)
                self.counters.answers[command.type] += 1
                await conn.ws.send(ack_frame(command.offer_id), text=True)
            elif isinstance(command, Assign | Resolve):
                await self._forward_command(conn.claims, command)
                await conn.ws.send(command_ack_frame(command), text=True)
            else:
                raise RejectedInput(MALFORMED, "already authenticated")
        except RejectedInput as exc:
            await self._reject(conn, exc, raw)
        except (StorageError, RedisError) as exc:
            log.warning("%s: cannot serve a frame: %s", conn.recipient, exc)
            await self._reject(conn, RejectedInput(UNAVAILABLE, "try again"), raw)

    async def _forward_command(self, claims: Claims, command: Assign | Resolve) -> None:
        """A dispatcher's assign or resolve, to the answers topic keyed by incident."""
        event = decide_command(claims, command, command_id=uuid.uuid4().hex, now=time.time())
        value = orjson.dumps(event.model_dump(mode="json"))
        try:
            await self._producer.send_and_wait(
                self.settings.topic(ANSWER_TOPIC), value, key=event.incident_id.encode()
            )
        except KafkaError as exc:
            raise StorageError(f"kafka: producing a {command.type}: {exc}") from exc

    async def _reject(self, conn: Connection, rejection: RejectedInput, raw: str | bytes) -> None:
        self.counters.rejected[rejection.reason] += 1
        await conn.ws.send(error_frame(rejection), text=True)
        if isinstance(rejection, RejectedAnswer):
            source = f"ws:{conn.claims.role}:{conn.claims.agency}:{conn.claims.sub}"
            try:
                await self._answers.dead_letter(rejection, source, raw)
            except CareKnotError as exc:
                log.warning("dead letter lost: %s", exc)

    # ------------------------------------------------------------ plain HTTP

    async def _http(self, ws: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/ws":
            return None
        if path == "/healthz":
            checks = {"redis": await self._redis_ok(), "kafka": await self._kafka_ok()}
            ok = all(checks.values())
            body = orjson.dumps({"ok": ok, **checks})
            return _response(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, body)
        if path == "/metrics":
            text = self.counters.render(self.connections).encode()
            return _response(HTTPStatus.OK, text, "text/plain; version=0.0.4; charset=utf-8")
        return await _static(path)

    async def _redis_ok(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self._redis.ping(), HEALTH_TIMEOUT_S))
        except (RedisError, TimeoutError):
            return False

    async def _kafka_ok(self) -> bool:
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), HEALTH_TIMEOUT_S)
        except (KafkaError, TimeoutError):
            return False
        return True


def _param(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _response(status: HTTPStatus, body: bytes, content_type: str = "application/json") -> Response:
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


async def _static(path: str) -> Response:
    """A file of ``static/`` by name (``/`` is ``index.html``); never anything outside it."""
    name = unquote(path).lstrip("/") or "index.html"
    file = STATIC_DIR / name.replace("\x00", "")
    if not file.resolve().is_relative_to(STATIC_DIR) or not file.is_file():
        return _response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")
    body = await asyncio.to_thread(file.read_bytes)
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type in _UTF8_TYPES:
        content_type += "; charset=utf-8"
    return _response(HTTPStatus.OK, body, content_type)


_UTF8_TYPES = frozenset(("application/javascript", "application/json", "image/svg+xml"))


async def run(settings: Settings) -> int:
    """``careknot gateway``: serve until SIGINT/SIGTERM."""
    try:
        async with Gateway(settings) as gateway:
            log.info("gateway on http://%s:%d", settings.gateway_host, gateway.port)
            await gateway.serve_forever()
    except (StorageError, OSError) as exc:
        log.error("gateway cannot start: %s", exc)
        return 1
    return 0


__all__ = ["Gateway", "run"]
