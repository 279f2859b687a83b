"""Simulated phones as load: caregivers' fixes published over MQTT at a fixed rate, one fix
per MQTT message (QoS 0) as phones send them, from publisher processes that write packets
built before the run (a phone's CPU is not the system's: the load must cost the machine little).

Each caregiver drives north through town: her ``tst`` goes up by :data:`FIX_INTERVAL_S` a fix
and she moves ~80 m (29 km/h; the trace is time-compressed, so the fixes' times run ahead of the
clock's), so the quality filters accept every fix, and the visits test every segment for homes
crossed. The load's agency has :data:`HOMES` patients' homes (each with the default fence) spread
over the streets the caregivers drive (:func:`seed`), so the visits classify fixes against real
fences. Used by ``careknot bench ingest`` (the load is what it measures) and
``careknot bench fall-to-offer --load`` (the load is what the emergencies go through).
"""

from __future__ import annotations

import random
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import orjson

from adapters.mqtt import wire as mqtt_wire
from adapters.storage.postgres import CaregiverRow, Database, PatientRow

AGENCY = "bench-ingest"
ORIGIN = (53.70, -1.70)  # around Leeds
STEP_DEG = 0.00072  # ~80 m north per fix: 29 km/h at a fix every FIX_INTERVAL_S
FIX_INTERVAL_S = 10
TST_SPAN_S = 60_000  # the first fix's tst is this far in the past (max_age is a day)
HOMES = 2000
HOMES_AREA_DEG = (0.6, 0.12)  # north and east of ORIGIN: where the caregivers drive
PACE_S = 0.002  # what is due is written every this often
BUILD_S_PER_PACKET = 10e-6  # time allowed to build a packet before the run starts


@dataclass(frozen=True)
class Share:
    """One publisher process's part of a run."""

    host: str
    port: int
    caregivers: list[str]
    steps: int
    rate: float
    start_at: float
    first_step: int
    base_tst: int
    sampled: list[str]
    credentials: tuple[str | None, str | None] = (None, None)
    """The username and password the load connects with (the services')."""


def fix_tst(base_tst: int, step: int) -> int:
    """The ``tst`` of a caregiver's ``step``-th fix."""
    return base_tst + step * FIX_INTERVAL_S


def position(index: int, step: int) -> tuple[float, float]:
    """Where the ``index``-th caregiver is at her ``step``-th fix: (lat, lon)."""
    return ORIGIN[0] + (index % 100) * 0.004 + step * STEP_DEG, ORIGIN[1] + (index // 100) * 0.006


def fix_payload(index: int, step: int, base_tst: int) -> bytes:
    lat, lon = position(index, step)
    return orjson.dumps(
        {
            "_type": "location",
            "lat": lat,
            "lon": lon,
            "tst": fix_tst(base_tst, step),
            "acc": 8,
            "batt": 77,
        }
    )


def start_time(packets_per_publisher: int) -> float:
    """When a run's publishers start: in a second, and the time to build their packets."""
    return time.time() + 1.0 + packets_per_publisher * BUILD_S_PER_PACKET


def publish(share: Share) -> tuple[int, float, list[tuple[str, int, float]]]:
    """Publish a share at its rate (runs in a publisher process): (count, seconds, samples).

    QoS 0 PUBLISH packets (:mod:`adapters.mqtt.wire`) built before the start (a phone's work
    is not the system's, and built between the pacing pauses they cost far more, the caches
    cold after every pause), then written on one connection, those due together; a sample is
    the time its packet was written.
    """
    n, total = len(share.caregivers), share.steps * len(share.caregivers)
    wanted = set(share.sampled)
    sampled = {k for k, cg in enumerate(share.caregivers) if cg in wanted}
    samples: list[tuple[str, int, float]] = []
    ids = [int(cg.rsplit("-", 1)[1]) for cg in share.caregivers]
    topics = [f"ck/{AGENCY}/cg/{cg}/loc" for cg in share.caregivers]
    ready = [_packet(share, topics, ids, k) for k in range(total)]
    with connected(share.host, share.port, credentials=share.credentials) as sock:
        while time.time() < share.start_at:
            time.sleep(0.001)  # pacing: the start is a time, not an event
        i = 0
        while i < total:
            due = min(total, int((time.time() - share.start_at) * share.rate) + 1)
            packets = b"".join(ready[i:due])
            written = time.time()
            sock.sendall(packets)
            samples += [_sample(share, k, written) for k in range(i, due) if k % n in sampled]
            i = due
            time.sleep(PACE_S)  # pacing the offered rate, not waiting for anything
        sock.sendall(mqtt_wire.DISCONNECT)
    return total, time.time() - share.start_at, samples


def _packet(share: Share, topics: list[str], ids: list[int], k: int) -> bytes:
    n = len(topics)
    payload = fix_payload(ids[k % n], share.first_step + k // n, share.base_tst)
    return mqtt_wire.publish(topics[k % n], payload)


def _sample(share: Share, k: int, written: float) -> tuple[str, int, float]:
    n = len(share.caregivers)
    return share.caregivers[k % n], fix_tst(share.base_tst, share.first_step + k // n), written


@contextmanager
def connected(
    host: str,
    port: int,
    name: str = "load",
    credentials: tuple[str | None, str | None] = (None, None),
) -> Iterator[socket.socket]:
    """A publisher's MQTT connection, made by hand (clean session, a client id of its own),
    with ``credentials`` (username, password) where given."""
    sock = socket.create_connection((host, port), timeout=30)
    try:
        client_id = f"careknot-{name}-{secrets.token_hex(4)}"
        sock.sendall(mqtt_wire.connect(client_id, *credentials))
        connack = sock.recv(4)
        if not mqtt_wire.connack_accepted(connack):
            raise ConnectionError(f"the broker refused the load's connection: {connack!r}")
        yield sock
    finally:
        sock.close()


def caregiver_ids(n: int) -> list[str]:
    return [f"bcg-{i}" for i in range(n)]


async def seed(db: Database, ids: list[str]) -> None:
    """The load's agency, its caregivers and its patients' homes in the registry."""
    await db.upsert_agency(AGENCY, "Benchmark Care")
    await db.upsert_caregivers([CaregiverRow(cg, AGENCY, f"Carer {cg}") for cg in ids])
    await db.upsert_patients(homes())


def homes(n: int = HOMES, seed: int = 11) -> list[PatientRow]:
    """Patients' homes spread evenly at random over the streets the caregivers drive."""
    rng = random.Random(seed)
    north, east = HOMES_AREA_DEG
    return [
        PatientRow(
            f"bpat-{i}",
            AGENCY,
            f"Patient {i}",
            ORIGIN[0] + rng.uniform(0, north),
            ORIGIN[1] + rng.uniform(0, east),
        )
        for i in range(n)
    ]
