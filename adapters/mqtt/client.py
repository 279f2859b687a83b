"""Ingest's MQTT client: aiomqtt for the connection, messages taken from the wire in batches.

aiomqtt (over paho) owns the connection: connecting, subscribing, keep-alive, the last will,
QoS 2. Its one cost here is per message: paho reads a packet with three or more ``recv``
calls and decodes it through objects, locks and callbacks, and aiomqtt hands one message per
wake-up of the event loop. For a flood of small PUBLISH packets that was most of ingest's CPU.
So :class:`ReadAheadSocket` sits under paho: one ``recv`` takes what the kernel holds, the
QoS 0 and 1 publishes in it are decoded in bulk (:mod:`adapters.mqtt.frames`) into the client's
:class:`PublishInbox`, and paho reads the other packets as before (its ``pending()`` is the hook
aiomqtt has for TLS sockets, which buffer the same way, so aiomqtt reads on until they are
used up). QoS 1 publishes are acknowledged through paho once ingest says so
(:meth:`BatchingClient.ack`: once Kafka has what it made of them), not on arrival.

Bounded: a publish longer than the client's ``max_publish_bytes`` is refused by the splitter
as it arrives, never buffered (see :mod:`adapters.mqtt.frames`), and the inbox holds at most
``inbox_capacity`` publishes (and what the read that filled it brought on top): once full, the
client stops reading its socket until the inbox is down to half, so a service that does not
keep up holds the broker back through TCP instead of filling its memory, and drops nothing.
While it does not read, paho does not see the broker's answers to its pings either: a pause
longer than the keep-alive loses the connection, which the caller makes again.

:func:`subscribed` is how a service listens: one connection (MQTT 3.1.1), subscribed to its
topics. The broker's failures come out as :class:`~kernel.errors.BrokerUnavailable`, whether
the connection cannot be made or is lost while the batches are taken; reconnecting is
:class:`adapters.mqtt.subscription.Subscription`'s to do.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from adapters.mqtt.access import BrokerAccess
from adapters.mqtt.frames import Publish, PublishSplitter
from kernel.errors import BrokerUnavailable

CHUNK_BYTES = 256 * 1024
"""The most one ``recv`` takes from the kernel."""
INBOX_CAPACITY = 5_000
"""Publishes the inbox holds before the client stops reading: ten of ingest's batches."""


class ReadAheadSocket:
    """A connected non-blocking socket read a chunk at a time: publishes go to ``deliver``;
    ``recv`` serves the other packets' bytes. Every other call goes to the socket."""

    def __init__(
        self,
        sock: socket.socket,
        deliver: Callable[[list[Publish]], None],
        chunk_bytes: int = CHUNK_BYTES,
        *,
        max_publish_bytes: int | None = None,
        holding: Callable[[], bool] = lambda: False,
    ) -> None:
        self._sock = sock
        self._deliver = deliver
        self._holding = holding
        self._chunk_bytes = chunk_bytes
        self._splitter = PublishSplitter(max_publish_bytes)
        self._passed = b""
        self._at = 0

    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes of the packets that are not publishes: from those read
        ahead while they last, else from one ``recv`` of a new chunk (``BlockingIOError`` when
        the kernel has none, the chunk held only publishes or ``holding()`` says no more may be
        read now; ``b""`` at the end of the stream, as the socket says)."""
        if self._at >= len(self._passed):
            if self._holding():
                raise BlockingIOError
            chunk = self._sock.recv(self._chunk_bytes)
            if not chunk:
                return chunk
            publishes, self._passed = self._splitter.feed(chunk)
            self._at = 0
            if publishes:
                self._deliver(publishes)
            if not self._passed:
                raise BlockingIOError
        out = self._passed[self._at : self._at + bufsize]
        self._at += len(out)
        return out

    def pending(self) -> int:
        """Bytes read ahead for paho and not yet served (with a TLS socket's own)."""
        tls = self._sock.pending() if isinstance(self._sock, ssl.SSLSocket) else 0
        return len(self._passed) - self._at + tls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class PublishInbox:
    """Publishes waiting for ingest, in arrival order; ends with the connection's error.

    Bounded by ``capacity``: the publishes that fill it call ``pause`` (the reader stops),
    and taking it down to half calls ``resume``; nothing is ever dropped."""

    def __init__(self, capacity: int = INBOX_CAPACITY) -> None:
        self.capacity = capacity
        self.paused = False
        self._waiting: deque[Publish] = deque()
        self._arrived = asyncio.Event()
        self._failure: BaseException | None = None
        self._pause: Callable[[], None] = lambda: None
        self._resume: Callable[[], None] = lambda: None

    def __len__(self) -> int:
        return len(self._waiting)

    def flow(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        """What stops the reader when the inbox is full, and starts it again."""
        self._pause, self._resume = pause, resume

    def put_many(self, publishes: Iterable[Publish]) -> None:
        self._waiting.extend(publishes)
        self._arrived.set()
        if len(self._waiting) >= self.capacity and not self.paused:
            self.paused = True
            self._pause()

    def fail(self, exc: BaseException) -> None:
        """No more will come: ``take`` raises ``exc`` once what waits is taken."""
        self._failure = exc
        self._arrived.set()

    def discard(self, exc: BaseException) -> None:
        """No more will be taken: what waits is dropped and ``take`` raises ``exc`` at once."""
        self._waiting.clear()
        self.fail(exc)

    async def take(self, limit: int) -> list[Publish]:
        """At least one and at most ``limit`` publishes, waiting for the first."""
        while not self._waiting:
            if self._failure is not None:
                raise self._failure
            self._arrived.clear()
            await self._arrived.wait()
        waiting = self._waiting
        taken = [waiting.popleft() for _ in range(min(limit, len(waiting)))]
        if self.paused and len(waiting) <= self.capacity // 2:
            self.paused = False
            self._resume()
        return taken


class BatchingClient(aiomqtt.Client):
    """``aiomqtt.Client`` whose messages come in batches (:meth:`batches`) from the wire."""

    def __init__(
        self,
        *args: Any,
        max_publish_bytes: int | None = None,
        inbox_capacity: int = INBOX_CAPACITY,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.inbox = PublishInbox(inbox_capacity)
        self._max_publish_bytes = max_publish_bytes
        self._reading_loop = asyncio.get_running_loop()
        self._client.manual_ack_set(True)  # acknowledged once handled: see ack()
        self.abandoned = False

    async def batches(self, limit: int) -> AsyncGenerator[list[Publish], None]:
        """Batches of up to ``limit`` messages as they come, until the connection is lost
        (then :class:`BrokerUnavailable`)."""
        relay = asyncio.ensure_future(self._relay())
        try:
            while True:
                yield await self.inbox.take(limit)
        finally:
            relay.cancel()

    def ack(self, publishes: Iterable[Publish]) -> None:
        """Acknowledge handled messages of QoS 1 and 2 to the broker (nothing once abandoned)."""
        if self.abandoned:
            return
        for p in publishes:
            if p.qos:
                self._client.ack(p.mid, p.qos)

    def abandon(self, why: BrokerUnavailable) -> None:
        """Acknowledge nothing more and hand out nothing more: the batches end with ``why``
        and what the connection delivered and was not acknowledged stays the broker's, sent
        again to the session's next connection."""
        self.abandoned = True
        self.inbox.discard(why)

    async def _relay(self) -> None:
        """What paho still delivers (QoS 2) joins the batches; a lost connection ends them."""
        try:
            async for m in self.messages:
                payload = m.payload if isinstance(m.payload, bytes) else b""
                self.inbox.put_many([Publish(m.topic.value, payload, m.qos, m.mid)])
        except aiomqtt.MqttError as exc:
            lost = BrokerUnavailable(f"mqtt: connection lost: {exc.__cause__ or exc}")
            lost.__cause__ = exc
            self.inbox.fail(lost)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        opened = client.socket()
        if isinstance(opened, socket.socket) and opened is sock:
            inbox = self.inbox
            ahead = ReadAheadSocket(
                opened,
                inbox.put_many,
                max_publish_bytes=self._max_publish_bytes,
                holding=lambda: inbox.paused,
            )
            client._sock = sock = ahead
            fd = opened.fileno()
            inbox.flow(partial(self._stop_reading, fd), partial(self._read_again, ahead, fd))
        super()._on_socket_open(client, userdata, sock)

    def _stop_reading(self, fd: int) -> None:
        """The inbox is full: the socket is not watched until it has room (the kernel's buffer,
        then the broker's, hold what comes meanwhile)."""
        self._reading_loop.remove_reader(fd)

    def _read_again(self, ahead: ReadAheadSocket, fd: int) -> None:
        """The inbox has room: watch the socket again, unless it was closed meanwhile."""
        if ahead.fileno() == fd:
            self._reading_loop.add_reader(fd, self._read, ahead)

    def _read(self, ahead: ReadAheadSocket) -> None:
        """What aiomqtt's reader does, for the socket watched again after a pause: paho reads,
        and reads on while the read-ahead holds bytes for it; a failure ends the batches."""
        client = self._client
        try:
            client.loop_read()
            while ahead.pending() > 0:
                client.loop_read()
        except Exception as exc:  # a broken connection, as aiomqtt's reader takes it
            lost = BrokerUnavailable(f"mqtt: reading the connection failed: {exc}")
            lost.__cause__ = exc
            self.inbox.fail(lost)


@asynccontextmanager
async def subscribed(
    host: str,
    port: int,
    topics: Iterable[str],
    *,
    qos: int = 1,
    max_publish_bytes: int | None = None,
    inbox_capacity: int = INBOX_CAPACITY,
    session: str | None = None,
    access: BrokerAccess | None = None,
) -> AsyncIterator[BatchingClient]:
    """A connection to the broker at ``host:port`` subscribed to ``topics``; raises
    :class:`BrokerUnavailable` when it cannot be made (its batches do when it is lost).
    A publish longer than ``max_publish_bytes`` comes as a refusal (see
    :mod:`adapters.mqtt.frames`); at most ``inbox_capacity`` wait to be taken.

    ``session`` is the client id of a persistent session (clean session off): the broker keeps
    its subscriptions and queues what comes for it while it is away, and sends again what a
    lost connection of it did not acknowledge; None: a clean session of a random id.
    ``access``: the credentials and TLS to connect with (its host and port are ``host:port``'s).

    MQTT 3.1.1: Mosquitto shares its subscriptions (``$share/...``) as it does MQTT 5's, and its
    PUBLISH packets carry no properties, so :mod:`adapters.mqtt.frames` reads them as they are
    and paho builds no properties object for each one."""
    client = BatchingClient(
        host,
        port,
        protocol=aiomqtt.ProtocolVersion.V311,
        identifier=session,
        clean_session=session is None,
        max_publish_bytes=max_publish_bytes,
        inbox_capacity=inbox_capacity,
        **(access.client_options() if access is not None else {}),
    )
    try:
        async with client:
            for topic in topics:
                await client.subscribe(topic, qos=qos)
            yield client
    except aiomqtt.MqttError as exc:
        raise BrokerUnavailable(f"mqtt: {host}:{port}: {exc}") from exc


async def end_session(
    host: str, port: int, session: str, access: BrokerAccess | None = None
) -> None:
    """End the persistent session ``session`` for good (an ingest process retired): the broker
    forgets its subscriptions and what it queued for it. :class:`BrokerUnavailable` when the
    broker does not answer."""
    ending = aiomqtt.Client(
        host,
        port,
        identifier=session,
        clean_session=True,
        protocol=aiomqtt.ProtocolVersion.V311,
        **(access.client_options() if access is not None else {}),
    )
    try:
        async with ending:
            pass
    except aiomqtt.MqttError as exc:
        raise BrokerUnavailable(f"mqtt: {host}:{port}: {exc}") from exc
