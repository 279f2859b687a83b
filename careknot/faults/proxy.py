"""A TCP proxy between a service and a server that can be made to misbehave.

Modes: ``pass`` (bytes through as they come), ``latency`` (every chunk held ``latency_s``
each way, in order, the stream's throughput kept), ``reset`` (every open connection reset
with RST, and new ones reset as they come) and ``blackhole`` (nothing goes through either
way, connections stay open and new ones wait, as on a network that lost its route: TCP
retransmits meanwhile, so when the route is back within TCP's patience what was sent arrives,
late; a client that gave up waiting has closed its connection by then). :class:`ProxyThread`
runs one on an event loop of its own in a thread, so a busy caller's loop adds nothing to what
it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
from concurrent.futures import Future
from typing import Literal

log = logging.getLogger(__name__)

Mode = Literal["pass", "latency", "reset", "blackhole"]
MODES: tuple[Mode, ...] = ("pass", "latency", "reset", "blackhole")
CHUNK = 65536
LOOPBACK = "127.0.0.1"


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), not FIN: as a connection a network dropped."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Listens on ``port`` and forwards to ``upstream_port``, in the current :attr:`mode`."""

    def __init__(self, port: int, upstream_port: int, *, latency_s: float = 0.2) -> None:
        self.port, self.upstream_port, self.latency_s = port, upstream_port, latency_s
        self.mode: Mode = "pass"
        self.connections = 0
        self.resets = 0
        self._open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None
        self._routed = asyncio.Event()
        self._routed.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, LOOPBACK, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in list(self._open):
            for w in pair:
                w.transport.abort()
        self._open.clear()

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode == "blackhole":
            self._routed.clear()
        else:
            self._routed.set()
        if mode == "reset":
            for pair in list(self._open):
                for w in pair:
                    _reset(w)
                self.resets += 1
            self._open.clear()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "reset":
            self.resets += 1
            _reset(cw)
            return
        await self._routed.wait()  # a connection made in a blackhole waits for the route
        try:
            ur, uw = await asyncio.open_connection(LOOPBACK, self.upstream_port)
        except OSError:
            _reset(cw)
            return
        pair = (cw, uw)
        self._open.add(pair)
        try:
            await asyncio.gather(self._pipe(cr, uw), self._pipe(ur, cw))
        finally:
            self._open.discard(pair)
            for w in pair:
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction; chunks held for latency go through a queue, so a held chunk
        does not hold the reading of the next."""
        held: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.create_task(self._send_held(held, writer))
        try:
            while chunk := await reader.read(CHUNK):
                await self._routed.wait()  # a blackhole holds it (and, TCP's window full, more)
                due = time.monotonic() + (self.latency_s if self.mode == "latency" else 0.0)
                held.put_nowait((due, chunk))
        except (ConnectionError, OSError):
            pass
        finally:
            held.put_nowait(None)
            with contextlib.suppress(ConnectionError, OSError):
                await sender
            writer.transport.abort()

    @staticmethod
    async def _send_held(
        held: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter
    ) -> None:
        while (item := await held.get()) is not None:
            due, chunk = item
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # the latency the proxy adds
            if writer.transport.is_closing():
                return
            writer.write(chunk)
            await writer.drain()


async def _end_the_rest() -> None:
    """Cancel every other task of the running loop and wait for them to end."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


class ProxyThread:
    """A :class:`TcpProxy` on its own event loop in a daemon thread; ``set_mode`` from any
    thread."""

    def __init__(self, proxy: TcpProxy) -> None:
        self.proxy = proxy
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"proxy-{proxy.port}", daemon=True
        )

    def __enter__(self) -> ProxyThread:
        self._thread.start()
        self._call(self.proxy.start()).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(Exception):
            self._call(self.proxy.close()).result(10)
        with contextlib.suppress(Exception):
            self._call(_end_the_rest()).result(10)  # its connections' tasks, ended, not dropped
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    def set_mode(self, mode: Mode) -> None:
        async def change() -> None:
            self.proxy.set_mode(mode)

        self._call(change()).result(10)
        log.info("proxy %d -> %d: %s", self.proxy.port, self.proxy.upstream_port, mode)

    def _call(self, coro: object) -> Future[None]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
