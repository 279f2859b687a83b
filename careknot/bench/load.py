"""Simulated phones as load: caregivers' fixes published over MQTT at a fixed rate, one fix
per MQTT message (QoS 0) as phones send them, from publisher processes.

Each caregiver's ``tst`` goes up by one second a fix and she moves a few metres, so the quality
filters accept every fix. Used by ``careknot bench ingest`` (the load is what it measures) and
``careknot bench fall-to-offer --load`` (the load is what the emergencies go through).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from careknot.storage.postgres import CaregiverRow, Database

AGENCY = "bench-ingest"
ORIGIN = (53.70, -1.70)  # around Leeds
STEP_DEG = 0.00005  # ~5.5 m north per fix: 20 km/h at one fix a second
TST_SPAN_S = 40_000  # the first fix's tst is this far in the past (max_age is a day)


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


def fix_payload(index: int, step: int, base_tst: int) -> bytes:
    lat = ORIGIN[0] + (index % 100) * 0.004 + step * STEP_DEG
    lon = ORIGIN[1] + (index // 100) * 0.006
    return orjson.dumps(
        {"_type": "location", "lat": lat, "lon": lon, "tst": base_tst + step, "acc": 8, "batt": 77}
    )


def publish(share: Share) -> tuple[int, float, list[tuple[str, int, float]]]:
    """Publish a share at its rate (runs in a publisher process): (count, seconds, samples)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client.max_queued_messages_set(0)
    client.connect(share.host, share.port)
    client.loop_start()
    sampled, samples = set(share.sampled), []
    n, total = len(share.caregivers), share.steps * len(share.caregivers)
    ids = [int(cg.rsplit("-", 1)[1]) for cg in share.caregivers]
    while time.time() < share.start_at:
        time.sleep(0.001)
    info = None
    for i in range(total):
        ahead = share.start_at + i / share.rate - time.time()
        if ahead > 0.002:
            time.sleep(ahead)  # pacing the offered rate, not waiting for anything
        cg, step = share.caregivers[i % n], share.first_step + i // n
        payload = fix_payload(ids[i % n], step, share.base_tst)
        info = client.publish(f"ck/{AGENCY}/cg/{cg}/loc", payload, qos=0)
        if cg in sampled:
            samples.append((cg, share.base_tst + step, time.time()))
    if info is not None:
        info.wait_for_publish(timeout=60)
    elapsed = time.time() - share.start_at
    client.loop_stop()
    client.disconnect()
    return total, elapsed, samples


def caregiver_ids(n: int) -> list[str]:
    return [f"bcg-{i}" for i in range(n)]


async def seed(db: Database, ids: list[str]) -> None:
    """The load's agency and caregivers in the registry."""
    await db.upsert_agency(AGENCY, "Benchmark Care")
    await db.upsert_caregivers([CaregiverRow(cg, AGENCY, f"Carer {cg}") for cg in ids])
