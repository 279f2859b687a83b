"""Ingest's MQTT client: aiomqtt, reading the broker's stream ahead in large chunks.

paho (under aiomqtt) reads a packet with three or more ``recv`` calls (the command byte, each
byte of the remaining length, then the rest), and aiomqtt hands it one packet per wake-up of
the event loop: thousands of system calls and loop turns a second for a flood of small
PUBLISH packets. :class:`ReadAheadSocket` takes what the kernel holds in one ``recv`` and serves
paho's small reads from it; its ``pending()`` (the hook aiomqtt already has for TLS sockets,
which buffer decoded bytes the same way) makes aiomqtt read on until the chunk is used up. So
one wake-up handles every packet that arrived, and nothing else about the client changes.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

CHUNK_BYTES = 256 * 1024
"""The most one ``recv`` takes from the kernel."""


class ReadAheadSocket:
    """A connected non-blocking socket whose ``recv`` serves from a chunk read ahead; every
    other call goes to the socket."""

    def __init__(self, sock: socket.socket, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._sock = sock
        self._chunk_bytes = chunk_bytes
        self._chunk = b""
        self._at = 0

    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes: from the chunk while it lasts, else one ``recv`` of a new
        chunk (``BlockingIOError`` when the kernel has none; ``b""`` at the end of the
        stream, as the socket says)."""
        if self._at >= len(self._chunk):
            self._chunk, self._at = self._sock.recv(self._chunk_bytes), 0
        out = self._chunk[self._at : self._at + bufsize]
        self._at += len(out)
        return out

    def pending(self) -> int:
        """Bytes read ahead and not yet served (with a TLS socket's own decoded bytes)."""
        tls = self._sock.pending() if isinstance(self._sock, ssl.SSLSocket) else 0
        return len(self._chunk) - self._at + tls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class ReadAheadClient(aiomqtt.Client):
    """``aiomqtt.Client`` whose connection reads ahead (:class:`ReadAheadSocket`); on every
    (re)connection, before aiomqtt starts reading."""

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        opened = client.socket()
        if isinstance(opened, socket.socket) and opened is sock:
            sock = ReadAheadSocket(opened)
            client._sock = sock
        super()._on_socket_open(client, userdata, sock)
