"""Fall to offer: from a fall detector's MQTT publish to the offer frame on the nearest
caregiver's WebSocket, through the whole system (``careknot up --simulate``) while the simulated
city publishes its caregivers' fixes.

Each fall is published only after the previous offer arrived and was declined, so the figure
is the latency of one emergency, not of a queue.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import tempfile
import time
from pathlib import Path

import aiomqtt
import orjson
import redis.asyncio as aioredis

from careknot.bench.report import latency_figures, machine, write
from careknot.settings import Settings
from careknot.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow
from careknot.system import RunningSystem, worker_ready
from careknot.waiting import poll_until
from simulators.phone import Phone, is_type, token

log = logging.getLogger(__name__)

AGENCY = "bench"
HOME = (53.8008, -1.5491)  # in the simulated city
NEAR = (53.8016, -1.5480)
READY_TIMEOUT_S = 60.0


async def run(settings: Settings, args: argparse.Namespace) -> int:
    return await measure(settings, falls=args.falls, output=args.output)


async def measure(settings: Settings, *, falls: int, output: str) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="careknot-bench-"))
    bench = settings.model_copy(
        update={
            "namespace": f"bench{secrets.token_hex(3)}",
            "gateway_port": _free_port(),
            "kafka_bootstrap": f"127.0.0.1:{_free_port()}",  # a tansu of its own
            "worker_datadir": str(workdir / "worker"),
        }
    )
    running = RunningSystem(bench, workdir, simulate=True)
    live = await asyncio.to_thread(running.__enter__)
    try:
        samples = await _measure(live, falls)
    except BaseException:
        await asyncio.to_thread(running.__exit__, None, None, None)
        log.error("the system said:\n%s", running.log_tail())
        raise
    await asyncio.to_thread(running.__exit__, None, None, None)
    figures = {
        "benchmark": "fall-to-offer",
        "falls": falls,
        **latency_figures(samples, "fall_to_offer"),
        "city": "50 caregivers, 200 homes, a fix every 3 s each",
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = write(output, "bench-fall-to-offer.json", figures)
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    print(f"written to {path}")
    return 0


async def _measure(s: Settings, falls: int) -> list[float]:
    await worker_ready(s, READY_TIMEOUT_S)
    await _seed(s, falls)
    phone = await Phone.open(s, token(s, "caregiver", "bench-cg", AGENCY))
    samples: list[float] = []
    async with aiomqtt.Client(s.mqtt_host, s.mqtt_port) as mq:
        fix = {"_type": "location", "lat": NEAR[0], "lon": NEAR[1], "tst": int(time.time())}
        await mq.publish(f"ck/{AGENCY}/cg/bench-cg/loc", orjson.dumps(fix), qos=1)
        await _wait_position(s)
        for n in range(falls):
            fall = {"type": "fall", "ts": time.time(), "seq": 1, "data": {}}
            started = time.perf_counter()
            await mq.publish(f"ck/{AGENCY}/dev/bench-fd{n}/evt", orjson.dumps(fall), qos=1)
            offer = await phone.expect(is_type("offer"), within=30)
            samples.append((time.perf_counter() - started) * 1000)
            await phone.send({"type": "decline", "offer_id": offer["offer_id"]})
    await phone.close()
    return samples


async def _wait_position(s: Settings) -> None:
    r = aioredis.Redis.from_url(s.redis_url)
    try:
        await poll_until(lambda: r.hget(s.key("cg", "bench-cg"), "ts"), 30, "the position")
    finally:
        await r.aclose()


async def _seed(s: Settings, homes: int) -> None:
    """One home per fall (a second fall from a home joins its waiting incident), all within
    a few hundred metres of the caregiver."""
    lat, lon = HOME
    async with Database(s) as db:
        await db.upsert_agency(AGENCY, "Benchmark Care")
        await db.upsert_caregivers([CaregiverRow("bench-cg", AGENCY, "Bea Bench")])
        await db.upsert_patients(
            [
                PatientRow(f"bench-pat{n}", AGENCY, f"Pat {n}", lat + n * 1e-5, lon)
                for n in range(homes)
            ]
        )
        await db.upsert_devices(
            [
                DeviceRow(f"bench-fd{n}", AGENCY, f"bench-pat{n}", "fall_detector")
                for n in range(homes)
            ]
        )


def _free_port() -> int:
    from careknot.servers import free_port

    return free_port()
