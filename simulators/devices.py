"""The simulated homes' fall detectors as devices that live: each beats every
:data:`HEARTBEAT_S` with its battery, which drains (some run low), and some drop offline and come
back, the same for the same seed.

A few (:data:`OWN_CONNECTIONS`) have an MQTT connection of their own, as a real device does:
its last will set (``offline``, retained), its birth (``online``, retained) published, and a
drop is the connection cut without DISCONNECT, so the broker publishes the will. The others
share the simulator's one connection, which publishes their heartbeats and, at a drop, their
``offline`` as their broker would (one connection a device for a whole city would cost the demo
more than it shows). :class:`DeviceLives` is pure; :func:`live` runs the own connections.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

import orjson

from adapters.mqtt import wire
from adapters.mqtt.access import BrokerAccess

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
OWN_CONNECTIONS = 8
DROPS_PER_DAY = 6.0
"""How often a device drops offline, on average (a demo shows some within the hour)."""
AWAY_S = (60.0, 600.0)
LOW_FROM = 0.1
"""The share of devices whose battery starts low and runs out within the day."""


@dataclass(frozen=True, slots=True)
class Life:
    device_id: str
    battery0: float
    drain_per_h: float
    drops: tuple[tuple[float, float], ...]
    """(gone at, back at), seconds from the start."""


def life_of(device_id: str, seed: int, hours: float = 24.0) -> Life:
    rng = random.Random(f"{seed}:device:{device_id}")
    low = rng.random() < LOW_FROM
    battery0 = rng.uniform(12.0, 25.0) if low else rng.uniform(60.0, 100.0)
    drain = rng.uniform(0.5, 1.0) if low else rng.uniform(0.05, 0.3)
    drops, at = [], 0.0
    while True:
        at += rng.expovariate(DROPS_PER_DAY / 86_400.0)
        if at > hours * 3600:
            break
        away = rng.uniform(*AWAY_S)
        drops.append((at, at + away))
        at += away
    return Life(device_id, battery0, drain, tuple(drops))


class DeviceLives:
    """Every device's life from ``start``: online or not, and its battery, at any time."""

    def __init__(self, device_ids: list[str], seed: int, start: float) -> None:
        self.start = start
        self.lives = {d: life_of(d, seed) for d in device_ids}

    def online(self, device_id: str, now: float) -> bool:
        t = now - self.start
        return not any(gone <= t < back for gone, back in self.lives[device_id].drops)

    def battery(self, device_id: str, now: float) -> int:
        life = self.lives[device_id]
        return max(0, round(life.battery0 - life.drain_per_h * (now - self.start) / 3600))

    def heartbeat(self, device_id: str, now: float) -> bytes:
        beat = {"ts": now, "battery": self.battery(device_id, now), "interval": HEARTBEAT_S}
        return orjson.dumps(beat)


def status_topic(agency_id: str, device_id: str) -> str:
    return f"ck/{agency_id}/dev/{device_id}/status"


async def live(
    access: BrokerAccess,
    agency_id: str,
    device_id: str,
    lives: DeviceLives,
    credentials: tuple[str | None, str | None] = (None, None),
) -> None:
    """One device on a connection of its own, for ever: connected with its will (and its
    ``credentials``, username and password), born, beating; at a drop its connection cut
    without DISCONNECT (the broker publishes the will); connected again once its life says it
    is back."""
    topic = status_topic(agency_id, device_id)
    while True:
        if not lives.online(device_id, time.time()):
            await asyncio.sleep(5.0)
            continue
        try:
            await _connected(access, topic, device_id, lives, credentials)
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.debug("%s: %r", device_id, exc)
            await asyncio.sleep(5.0)


async def _connected(
    access: BrokerAccess,
    topic: str,
    device_id: str,
    lives: DeviceLives,
    credentials: tuple[str | None, str | None],
) -> None:
    reader, writer = await asyncio.open_connection(
        access.host, access.port, ssl=access.ssl_context()
    )
    try:
        will, (user, password) = (topic, b"offline"), credentials
        keepalive = int(HEARTBEAT_S * 2)
        writer.write(wire.connect(f"sim-{device_id}", user, password, keepalive, will=will))
        if not wire.connack_accepted(await reader.readexactly(4)):
            raise OSError("the broker refused the connection")
        writer.write(wire.publish(topic, b"online", 1, retain=True))
        while lives.online(device_id, time.time()):
            writer.write(wire.publish(topic, lives.heartbeat(device_id, time.time())))
            await writer.drain()
            await asyncio.sleep(HEARTBEAT_S)
        log.info("%s drops offline: its connection cut, the broker publishes its will", device_id)
    finally:
        writer.transport.abort()  # no DISCONNECT


class SharedDevices:
    """The devices without a connection of their own, as their broker would tell them: what to
    publish at ``now`` (a birth or an ``offline`` where their state changed, retained; a
    heartbeat where one is due)."""

    def __init__(self, lives: DeviceLives, device_ids: list[str], agency_id: str) -> None:
        self._lives, self._agency = lives, agency_id
        self._online = dict.fromkeys(device_ids, False)
        rng = random.Random(f"{agency_id}:phases")
        self._next_beat = {d: lives.start + rng.uniform(0.0, HEARTBEAT_S) for d in device_ids}

    def due(self, now: float) -> list[tuple[str, bytes, bool]]:
        """(topic, payload, retained) to publish now."""
        out = []
        for device, was in self._online.items():
            topic = status_topic(self._agency, device)
            online = self._lives.online(device, now)
            if online != was:
                self._online[device] = online
                out.append((topic, b"online" if online else b"offline", True))
            if online and now >= self._next_beat[device]:
                self._next_beat[device] = now + HEARTBEAT_S
                out.append((topic, self._lives.heartbeat(device, now), False))
        return out
