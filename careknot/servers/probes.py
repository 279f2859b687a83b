"""Whether a server answers, by a real protocol exchange: MQTT CONNECT, Redis PING, Postgres
``SELECT 1``, a Kafka metadata request. Each probe is synchronous and callable from anywhere
(async clients run on a private loop in a worker thread)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import ssl
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import redis

from adapters.mqtt import wire as mqtt_wire

T = TypeVar("T")

PROBE_TIMEOUT_S = 1.0
PROBE_THREAD = "careknot-probe"
LOOPBACK = "127.0.0.1"


class _QuietProbes(logging.Filter):
    """Drop aiokafka's connection errors raised by our own probes (expected when silent)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.threadName or not record.threadName.startswith(PROBE_THREAD)


logging.getLogger("aiokafka").addFilter(_QuietProbes())


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a private loop in a worker thread (callable from anywhere)."""
    with ThreadPoolExecutor(1, thread_name_prefix=PROBE_THREAD) as pool:
        return pool.submit(asyncio.run, coro).result()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def mqtt_answers(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True if an MQTT broker at ``url`` accepts a CONNECT (CONNACK with return code 0)."""
    parts = urlsplit(url)
    host = parts.hostname or LOOPBACK
    tls = parts.scheme in ("mqtts", "ssl")
    port = parts.port or (8883 if tls else 1883)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            sock = (
                ssl.create_default_context().wrap_socket(raw, server_hostname=host) if tls else raw
            )
            client_id = f"careknot-probe-{secrets.token_hex(4)}"
            sock.sendall(mqtt_wire.connect(client_id, user, password, keepalive=10))
            connack = _recv_exactly(sock, 4)
            with contextlib.suppress(OSError):
                sock.sendall(mqtt_wire.DISCONNECT)
    except OSError:
        return False
    return mqtt_wire.connack_accepted(connack)


def redis_answers(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True if Redis at ``url`` answers PING."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


async def _postgres_select_1(dsn: str, wait_s: float) -> bool:
    conn = await asyncpg.connect(dsn, timeout=wait_s)
    try:
        return bool(await conn.fetchval("SELECT 1", timeout=wait_s) == 1)
    finally:
        await conn.close(timeout=wait_s)


def postgres_answers(dsn: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True if Postgres at ``dsn`` accepts the connection and answers ``SELECT 1``."""
    try:
        return run_async(_postgres_select_1(dsn, timeout))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


async def _kafka_bootstrap(bootstrap: str, wait_s: float) -> None:
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(wait_s * 1000))
    try:
        async with asyncio.timeout(wait_s * 2):
            await client.bootstrap()
    finally:
        await client.close()


def kafka_answers(bootstrap: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True if a Kafka-protocol broker at ``bootstrap`` answers a metadata request."""
    from aiokafka.errors import KafkaError

    try:
        run_async(_kafka_bootstrap(bootstrap, timeout))
    except (KafkaError, OSError, TimeoutError):
        return False
    return True


def redact(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
