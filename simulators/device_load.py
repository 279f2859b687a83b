"""Simulated home devices as load: vitals monitors' telemetry and motion sensors' events,
published over MQTT at a fixed rate from publisher processes that write packets built before
the run (a device's CPU is not the system's: the load must cost the machine little).

Devices publish at QoS 1, as home devices do: the broker answers each PUBLISH with a PUBACK,
which a reader thread counts. What the broker acknowledged is what the system took and must
keep (``careknot bench devices`` compares it with what reached Postgres). Each home has one
vitals monitor (``bvm-{i}``) sending one reading a message (heart rate, SpO2 and temperature,
resting values with a little noise: the thresholds stay quiet, the filters still run) and one
motion sensor (``bms-{i}``); the two kinds are interleaved evenly at the share's rate.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from dataclasses import dataclass

import orjson

from adapters.mqtt import wire as mqtt_wire
from adapters.storage.postgres import Database, DeviceRow, PatientRow
from simulators.load import connected

AGENCY = "bench-devices"
ORIGIN = (53.75, -1.60)
PACE_S = 0.002  # what is due is written every this often
ROOMS = ("kitchen", "bathroom", "bedroom", "lounge", "hall")
PACKET_IDS = 65535


def monitor_id(home: int) -> str:
    return f"bvm-{home}"


def sensor_id(home: int) -> str:
    return f"bms-{home}"


def patient_id(home: int) -> str:
    return f"bdpat-{home}"


@dataclass(frozen=True)
class DeviceShare:
    """One publisher process's part of a run: ``telemetry`` readings and ``events`` motion
    events from ``homes``, ``rate`` messages a second from ``start_at`` (epoch s)."""

    host: str
    port: int
    homes: list[int]
    telemetry: int
    events: int
    rate: float
    start_at: float
    seed: int = 1
    credentials: tuple[str | None, str | None] = (None, None)
    """The username and password the load connects with (the services')."""


@dataclass(frozen=True)
class Published:
    telemetry: int
    events: int
    acknowledged: int
    seconds: float
    error: str | None = None
    """What stopped the broker's acknowledgements being counted, if anything did."""


def is_event(k: int, events: int, total: int) -> bool:
    """Whether message ``k`` of ``total`` is an event, ``events`` of them spread evenly."""
    return (k + 1) * events // total > k * events // total


def reading(rng: random.Random, ts: float, seq: int) -> bytes:
    return orjson.dumps(
        {
            "ts": round(ts, 3),
            "seq": seq,
            "hr": round(rng.gauss(72, 3), 1),
            "spo2": round(min(100.0, rng.gauss(97, 0.7)), 1),
            "temp": round(rng.gauss(36.6, 0.1), 2),
        }
    )


def motion(rng: random.Random, ts: float, seq: int) -> bytes:
    return orjson.dumps(
        {"type": "motion", "ts": round(ts, 3), "seq": seq, "data": {"room": rng.choice(ROOMS)}}
    )


def packets(share: DeviceShare) -> list[bytes]:
    """Every packet of the share, in order, each stamped with the time it is due."""
    rng = random.Random(share.seed)
    total, n = share.telemetry + share.events, len(share.homes)
    seqs: dict[str, int] = {}
    sent = {"evt": 0, "tel": 0}  # each kind goes round the homes on its own
    out = []
    for k in range(total):
        ts = share.start_at + k / share.rate
        topic_kind = "evt" if is_event(k, share.events, total) else "tel"
        home = share.homes[sent[topic_kind] % n]
        sent[topic_kind] += 1
        if topic_kind == "evt":
            device, build = sensor_id(home), motion
        else:
            device, build = monitor_id(home), reading
        seq = seqs[device] = seqs.get(device, -1) + 1
        topic = f"ck/{AGENCY}/dev/{device}/{topic_kind}"
        out.append(mqtt_wire.publish(topic, build(rng, ts, seq), packet_id=k % PACKET_IDS + 1))
    return out


def publish(share: DeviceShare) -> Published:
    """Publish a share at its rate (runs in a publisher process) and wait for the broker's
    acknowledgements of all of it (or a minute without one)."""
    ready = packets(share)
    with connected(share.host, share.port, "devload", share.credentials) as sock:
        acks = _Acks(sock, len(ready))
        acks.start()
        while time.time() < share.start_at:
            time.sleep(0.001)  # pacing: the start is a time, not an event
        i = 0
        while i < len(ready):
            due = min(len(ready), int((time.time() - share.start_at) * share.rate) + 1)
            sock.sendall(b"".join(ready[i:due]))
            i = due
            time.sleep(PACE_S)  # pacing the offered rate, not waiting for anything
        seconds = time.time() - share.start_at
        acks.join()
        sock.sendall(mqtt_wire.DISCONNECT)
    return Published(share.telemetry, share.events, acks.count, seconds, acks.error)


class _Acks(threading.Thread):
    """Counts the PUBACKs coming back until every packet is acknowledged or the broker has
    been silent for :data:`QUIET_S`."""

    QUIET_S = 60.0

    def __init__(self, sock: socket.socket, expected: int) -> None:
        super().__init__(daemon=True)
        self._sock, self._expected = sock, expected
        self.count = 0
        self.error: str | None = None

    def run(self) -> None:
        self._sock.settimeout(self.QUIET_S)
        pending = b""
        try:
            while self.count < self._expected:
                data = self._sock.recv(65536)
                if not data:
                    return
                pending += data
                whole = len(pending) - len(pending) % mqtt_wire.PUBACK_LENGTH
                self.count += len(mqtt_wire.puback_ids(pending[:whole]))
                pending = pending[whole:]
        except TimeoutError:
            self.error = f"no PUBACK for {self.QUIET_S:.0f} s after {self.count}"
        except (OSError, ValueError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"


async def seed(db: Database, homes: int) -> None:
    """The load's agency, its patients and each home's vitals monitor and motion sensor."""
    await db.upsert_agency(AGENCY, "Benchmark Devices Care")
    rng = random.Random(homes)
    await db.upsert_patients(
        [
            PatientRow(
                patient_id(i),
                AGENCY,
                f"Resident {i}",
                ORIGIN[0] + rng.uniform(0, 0.3),
                ORIGIN[1] + rng.uniform(0, 0.2),
            )
            for i in range(homes)
        ]
    )
    await db.upsert_devices(
        [DeviceRow(monitor_id(i), AGENCY, patient_id(i), "vitals_monitor") for i in range(homes)]
        + [DeviceRow(sensor_id(i), AGENCY, patient_id(i), "motion_sensor") for i in range(homes)]
    )
