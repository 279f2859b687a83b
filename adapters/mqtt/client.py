"""Ingest's MQTT client: aiomqtt for the connection, messages taken from the wire in batches.

aiomqtt (over paho) owns the connection: connecting, subscribing, keep-alive, the last will,
QoS 2. Its one cost here is per message: paho reads a packet with three or more ``recv``
calls and decodes it through objects, locks and callbacks, and aiomqtt hands one message per
wake-up of the event loop. For a flood of small PUBLISH packets that was most of ingest's CPU.
So :class:`ReadAheadSocket` sits under paho: one ``recv`` takes what the kernel holds, the
QoS 0 and 1 publishes in it are decoded in bulk (:mod:`adapters.mqtt.frames`) into the client's
:class:`PublishInbox`, and paho reads the other packets as before (its ``pending()`` is the hook
aiomqtt has for TLS sockets, which buffer the same way, so aiomqtt reads on until they are
used up). QoS 1 publishes are acknowledged through paho once ingest has handled them
(:meth:`BatchingClient.ack`), not on arrival.

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
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from adapters.mqtt.frames import Publish, PublishSplitter
from kernel.errors import BrokerUnavailable

CHUNK_BYTES = 256 * 1024
"""The most one ``recv`` takes from the kernel."""


class ReadAheadSocket:
    """A connected non-blocking socket read a chunk at a time: publishes go to ``deliver``;
    ``recv`` serves the other packets' bytes. Every other call goes to the socket."""

    def __init__(
        self,
        sock: socket.socket,
        deliver: Callable[[list[Publish]], None],
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._sock = sock
        self._deliver = deliver
        self._chunk_bytes = chunk_bytes
        self._splitter = PublishSplitter()
        self._passed = b""
        self._at = 0

    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes of the packets that are not publishes: from those read
        ahead while they last, else from one ``recv`` of a new chunk (``BlockingIOError`` when
        the kernel has none or the chunk held only publishes; ``b""`` at the end of the
        stream, as the socket says)."""
        if self._at >= len(self._passed):
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
    """Publishes waiting for ingest, in arrival order; ends with the connection's error."""

    def __init__(self) -> None:
        self._waiting: deque[Publish] = deque()
        self._arrived = asyncio.Event()
        self._failure: BaseException | None = None

    def put_many(self, publishes: Iterable[Publish]) -> None:
        self._waiting.extend(publishes)
        self._arrived.set()

    def fail(self, exc: BaseException) -> None:
        """No more will come: ``take`` raises ``exc`` once what waits is taken."""
        self._failure = exc
        self._arrived.set()

    async def take(self, limit: int) -> list[Publish]:
        """At least one and at most ``limit`` publishes, waiting for the first."""
        while not self._waiting:
            if self._failure is not None:
                raise self._failure
            self._arrived.clear()
            await self._arrived.wait()
        waiting = self._waiting
        return [waiting.popleft() for _ in range(min(limit, len(waiting)))]


class BatchingClient(aiomqtt.Client):
    """``aiomqtt.Client`` whose messages come in batches (:meth:`batches`) from the wire."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inbox = PublishInbox()
        self._client.manual_ack_set(True)  # acknowledged once handled: see ack()

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
        """Acknowledge handled messages of QoS 1 and 2 to the broker."""
        for p in publishes:
            if p.qos:
                self._client.ack(p.mid, p.qos)

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
            sock = ReadAheadSocket(opened, self.inbox.put_many)
            client._sock = sock
        super()._on_socket_open(client, userdata, sock)


@asynccontextmanager
async def subscribed(
    host: str, port: int, topics: Iterable[str], *, qos: int = 1
) -> AsyncIterator[BatchingClient]:
    """A connection to the broker at ``host:port`` subscribed to ``topics``; raises
    :class:`BrokerUnavailable` when it cannot be made (its batches do when it is lost).

    MQTT 3.1.1: Mosquitto shares its subscriptions (``$share/...``) as it does MQTT 5's, and its
    PUBLISH packets carry no properties, so :mod:`adapters.mqtt.frames` reads them as they are
    and paho builds no properties object for each one."""
    client = BatchingClient(host, port, protocol=aiomqtt.ProtocolVersion.V311)
    try:
        async with client:
            for topic in topics:
                await client.subscribe(topic, qos=qos)
            yield client
    except aiomqtt.MqttError as exc:
        raise BrokerUnavailable(f"mqtt: {host}:{port}: {exc}") from exc
