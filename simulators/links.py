"""The simulated devices' and phones' connections to the broker.

Where ``careknot up`` started the broker (the settings name its dynamic-security admin's
password file), :func:`provision` gives every device and phone of the city a client of its own
at the broker (``adapters.mqtt.dynsec``: its id its username, its own topics alone to publish
under) as the city registers them, and each publishes on a connection of its own, made as it
first has something to say (:class:`OwnLinks`: a few bytes of state a connection, the packets
written by hand, as a device's firmware would). A simulated publisher's password is derived from
the admin's (HMAC-SHA256 of its id), so the city run again against the same broker finds its
clients made and makes only the new ones (each costs the broker a rewrite of its whole
configuration).

Where the broker is another's, provisioning is skipped (a log line says so) and the city
publishes on one connection with the configured credentials, as before.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiomqtt

from adapters.mqtt import wire
from adapters.mqtt.access import BrokerAccess, access_of, admin_access
from adapters.mqtt.dynsec import DynSec, Kind, Publisher
from kernel.settings import Settings

log = logging.getLogger(__name__)

DRAIN_ABOVE_BYTES = 64 * 1024
CONNECT_TIMEOUT_S = 10.0


class Publishing(Protocol):
    """What the city's loops publish through: an ``aiomqtt.Client`` or :class:`OwnLinks`."""

    async def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> object: ...


def derived_password(key: str, publisher: str) -> str:
    digest = hmac.new(key.encode(), f"careknot-sim:{publisher}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def publisher_of(topic: str) -> str | None:
    """The device or caregiver a ``ck/{agency}/dev|cg/{id}/...`` topic is published under."""
    parts = topic.split("/", 4)
    if len(parts) >= 4 and parts[0] == "ck" and parts[2] in ("dev", "cg"):
        return parts[3]
    return None


async def provision(
    settings: Settings, agency: str, publishers: Iterable[tuple[Kind, str]]
) -> dict[str, str] | None:
    """Credentials of their own for ``publishers`` ((kind, id): ``dev`` a device, ``cg`` a
    caregiver's phone) at a broker ``careknot up`` started: their passwords by id. None where
    the broker is another's (nothing provisioned). :class:`BrokerUnavailable` when the broker
    cannot be reached."""
    admin = admin_access(settings)
    if admin is None:
        log.info(
            "mqtt: no dynamic-security admin for this broker (not started by careknot up):"
            " provisioning skipped; the simulated devices and phones connect as %s",
            settings.mqtt_username or "an anonymous client",
        )
        return None
    key = admin.password or ""
    wanted = [Publisher(agency, kind, p, derived_password(key, p)) for kind, p in publishers]
    async with DynSec(admin) as control:
        await control.default_deny()
        new = await control.provision(wanted)
    log.info("mqtt: %d devices and phones have credentials of their own (%d new)", len(wanted), new)
    return {p.id: p.password for p in wanted}


@dataclass
class _Link:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    watcher: asyncio.Task[None] | None = None
    next_id: int = 0
    lost: bool = False

    def packet_id(self) -> int:
        self.next_id = self.next_id % 65535 + 1
        return self.next_id

    async def watch(self) -> None:
        """Read what the broker sends back (PUBACKs) until the connection ends."""
        try:
            while await self.reader.read(65536):
                pass
        except OSError:
            pass
        self.lost = True


@dataclass
class OwnLinks:
    """One connection per publisher, made when it first publishes, with its own credentials.
    A connection that cannot be made, or is lost, raises ``aiomqtt.MqttError``, as one shared
    connection would."""

    access: BrokerAccess
    passwords: Mapping[str, str]
    links: dict[str, _Link] = field(default_factory=dict)

    async def publish(
        self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False
    ) -> None:
        publisher = publisher_of(topic)
        if publisher is None or publisher not in self.passwords:
            raise aiomqtt.MqttError(f"no credentials to publish on {topic}")
        link = self.links.get(publisher)
        if link is None or link.lost:
            link = self.links[publisher] = await self._open(publisher)
        body = payload.encode() if isinstance(payload, str) else payload
        link.writer.write(
            wire.publish(topic, body, link.packet_id() if qos else None, retain=retain)
        )
        if link.writer.transport.get_write_buffer_size() > DRAIN_ABOVE_BYTES:
            try:
                await link.writer.drain()
            except OSError as exc:
                raise aiomqtt.MqttError(f"{publisher}: {exc}") from exc

    async def _open(self, publisher: str) -> _Link:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(
                    self.access.host, self.access.port, ssl=self.access.ssl_context()
                )
                client_id = f"sim-{publisher}-{secrets.token_hex(3)}"
                writer.write(wire.connect(client_id, publisher, self.passwords[publisher], 0))
                accepted = wire.connack_accepted(await reader.readexactly(4))
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            raise aiomqtt.MqttError(f"{publisher}: cannot connect: {exc!r}") from exc
        if not accepted:
            writer.transport.abort()
            raise aiomqtt.MqttError(f"{publisher}: the broker refused its credentials")
        link = _Link(reader, writer)
        link.watcher = asyncio.create_task(link.watch())
        return link

    async def close(self) -> None:
        for link in self.links.values():
            if link.watcher is not None:
                link.watcher.cancel()
            with contextlib.suppress(OSError):
                link.writer.write(wire.DISCONNECT)
            link.writer.transport.abort()
        self.links.clear()


class Links:
    """How the city publishes: ``async with links.connected() as mq: await mq.publish(...)``;
    each publisher on its own connection where it has credentials (:meth:`add`), else one
    connection with the settings' credentials."""

    def __init__(self, settings: Settings) -> None:
        self.access = access_of(settings)
        self.passwords: dict[str, str] = {}
        self.own = False

    def add(self, passwords: Mapping[str, str] | None) -> None:
        """Publishers given credentials of their own (None: none, the broker is another's)."""
        if passwords is not None:
            self.own = True
            self.passwords.update(passwords)

    def credentials(self, publisher: str) -> tuple[str | None, str | None]:
        """The username and password ``publisher`` connects with."""
        if self.own:
            return publisher, self.passwords.get(publisher)
        return self.access.username, self.access.password

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[Publishing]:
        if not self.own:
            async with self.access.client() as mq:
                yield mq
            return
        links = OwnLinks(self.access, self.passwords)
        try:
            yield links
        finally:
            await links.close()
