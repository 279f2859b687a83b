"""Fall to offer: from a fall detector's MQTT publish to the offer frame on the nearest
caregiver's WebSocket, through the whole system (``careknot up --simulate``) while the simulated
city publishes its caregivers' fixes.

Each fall is published only after the previous offer arrived and was declined, so the figure
is the latency of one emergency, not of a queue. The time before the dispatcher begins its wave
is split at ingest's receipt of the fall (its ``received_at`` in the home's event history) and
the incident's opening: ``publish_to_ingest``, ``ingest_to_opened``.

``--load RATE`` (``careknot bench fall-to-offer --help``) adds simulated phones of another agency
publishing RATE fixes a second over MQTT (:mod:`simulators.load`; ``--load-caregivers N``,
default 5,000), started :data:`LOAD_WARM_S` before the first fall and kept up for
:data:`LOAD_S_PER_FALL` a fall after it: the emergencies go through ingest and the worker while
they carry that load. Every fall asked for is measured; on a machine too slow for them all within
the load, the later ones come after it, and ``falls_under_load`` says how many did not. The
system runs its own MQTT broker and Kafka, so nothing else on the machine shares them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from adapters.mqtt.access import access_of, credentials
from adapters.storage.namespace import drop_namespace
from adapters.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow
from careknot.bench import own_options
from careknot.bench.report import latency_figures, machine, write
from careknot.running import RunningSystem, isolated, worker_ready
from dispatch.offers import OfferTiming
from kernel.settings import Settings
from kernel.waiting import poll_until
from simulators.load import TST_SPAN_S, Share, caregiver_ids, publish, seed, start_time
from simulators.phone import Phone, is_type, token

log = logging.getLogger(__name__)

AGENCY = "bench"
HOME = (53.8008, -1.5491)  # in the simulated city
NEAR = (53.8016, -1.5480)
READY_TIMEOUT_S = 60.0
LOAD_WARM_S = 5.0
LOAD_S_PER_FALL = 0.5  # the load lasts this long a fall, after its warm-up


@dataclass
class Samples:
    """Per fall: milliseconds to the offer on the phone, and to the moment the dispatcher began
    its wave (the offer's expiry less its window, the dispatcher's clock), the rest being the
    search, the offer's records, the outbox, the gateway and the WebSocket."""

    total_ms: list[float] = field(default_factory=list)
    to_wave_ms: list[float] = field(default_factory=list)
    under_load: int = 0
    """Falls begun while the load was published."""
    published_at: dict[str, float] = field(default_factory=dict)
    """When each detector's fall was published (epoch s), for the stages before the wave."""
    stages_ms: dict[str, list[float]] = field(default_factory=dict)

    def add(self, total_ms: float, to_wave_ms: float) -> None:
        self.total_ms.append(total_ms)
        self.to_wave_ms.append(to_wave_ms)

    def figures(self) -> dict[str, float]:
        wave_to_phone = [t - w for t, w in zip(self.total_ms, self.to_wave_ms, strict=True)]
        stages = {
            name: value
            for stage, ms in self.stages_ms.items()
            if ms
            for name, value in latency_figures(ms, stage).items()
        }
        return {
            **latency_figures(self.total_ms, "fall_to_offer"),
            **latency_figures(self.to_wave_ms, "fall_to_wave"),
            **stages,
            **latency_figures(wave_to_phone, "wave_to_offer"),
        }


BENCH_FRAME_RATE = 1000


@dataclass(frozen=True)
class Load:
    rate: int = 0
    caregivers: int = 5000


async def run(settings: Settings, args: argparse.Namespace) -> int:
    opts = own_options("fall-to-offer", args)
    load = Load(opts.load, opts.load_caregivers)
    figures = await measure(settings, falls=opts.falls, load=load)
    path = write(args.output, "bench-fall-to-offer.json", figures)
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    print(f"written to {path}")
    return 0


async def measure(settings: Settings, *, falls: int, load: Load = Load()) -> dict[str, Any]:
    """Run the system, measure ``falls`` falls (under ``load``), and return the figures."""
    workdir = Path(tempfile.mkdtemp(prefix="careknot-bench-"))
    # the bench's one phone declines an offer every few tens of milliseconds, as no caregiver
    # does: the gateway's frame budget (for a person's phone) would close it
    bench = isolated(settings, workdir).model_copy(
        update={"gateway_frame_rate": BENCH_FRAME_RATE, "gateway_frame_burst": BENCH_FRAME_RATE}
    )
    running = RunningSystem(bench, workdir, simulate=True)
    live = await asyncio.to_thread(running.__enter__)
    try:
        samples, loaded = await _measure(live, falls, load)
    except BaseException:
        log.error("the system said:\n%s", running.log_tail())
        raise
    finally:
        await asyncio.to_thread(running.__exit__, None, None, None)
        await drop_namespace(live)
    return {
        "benchmark": "fall-to-offer",
        "falls": len(samples.total_ms),
        "falls_under_load": samples.under_load,
        **samples.figures(),
        "city": "50 caregivers, 200 homes, a fix every 3 s each",
        "load": {**asdict(load), **loaded},
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


async def _measure(s: Settings, falls: int, load: Load) -> tuple[Samples, dict[str, float]]:
    await worker_ready(s, READY_TIMEOUT_S)
    await _seed(s, falls)
    if not load.rate:
        return await _falls(s, falls), {}
    ids = caregiver_ids(load.caregivers)
    async with Database(s, max_size=2) as db:
        await seed(db, ids)
    duration = LOAD_WARM_S + falls * LOAD_S_PER_FALL
    start_at = start_time(round(load.rate * duration / 2) + 1)
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        loop = asyncio.get_running_loop()
        shares = [_share(s, ids[k::2], load.rate / 2, duration, start_at) for k in range(2)]
        publishing = [loop.run_in_executor(pool, publish, sh) for sh in shares]
        await asyncio.sleep(max(0.0, start_at + LOAD_WARM_S - time.time()))  # the load's warm-up
        samples = await _falls(s, falls, until=start_at + duration)
        published = await asyncio.gather(*publishing)
    count, seconds = sum(p[0] for p in published), max(p[1] for p in published)
    return samples, {"published": count, "published_rate": round(count / seconds, 1)}


def _share(s: Settings, ids: list[str], rate: float, duration: float, start_at: float) -> Share:
    steps = max(1, round(rate * duration / len(ids)))
    base_tst = int(time.time()) - TST_SPAN_S
    return Share(
        s.mqtt_host, s.mqtt_port, ids, steps, rate, start_at, 0, base_tst, [], credentials(s)
    )


async def _falls(s: Settings, falls: int, until: float = math.inf) -> Samples:
    """Fall after fall until ``falls`` are measured; those begun before ``until`` (epoch s,
    when the load ends) are counted as under load."""
    phone = await Phone.open(s, token(s, "caregiver", "bench-cg", AGENCY))
    timing = OfferTiming(s.offer_window_by_severity, s.offer_window_s, s.max_waves)
    samples = Samples()
    async with access_of(s).client() as mq:
        fix = {"_type": "location", "lat": NEAR[0], "lon": NEAR[1], "tst": int(time.time())}
        await mq.publish(f"ck/{AGENCY}/cg/bench-cg/loc", orjson.dumps(fix), qos=1)
        await _wait_position(s)
        for n in range(falls):
            if time.time() < until:
                samples.under_load += 1
            fall = {"type": "fall", "ts": time.time(), "seq": 1, "data": {}}
            started, published_at = time.perf_counter(), time.time()
            samples.published_at[f"bench-fd{n}"] = published_at
            await mq.publish(f"ck/{AGENCY}/dev/bench-fd{n}/evt", orjson.dumps(fall), qos=1)
            offer = await phone.expect(is_type("offer"), within=30)
            total_ms = (time.perf_counter() - started) * 1000
            window_s = timing.window_s(offer["incident"]["severity"])
            samples.add(total_ms, (offer["expires_at"] - window_s - published_at) * 1000)
            await phone.send({"type": "decline", "offer_id": offer["offer_id"]})
    await phone.close()
    await _stages(s, samples)
    return samples


async def _stages(s: Settings, samples: Samples) -> None:
    """The time before the wave in two: from the publish to ingest receiving the fall (its
    ``received_at``, in the home's event history) and from there to the incident's opening."""
    async with Database(s, max_size=1) as db:
        rows = await db.pool.fetch(
            "SELECT e.device_id, extract(epoch FROM e.received_at) AS received,"
            " extract(epoch FROM i.opened_at) AS opened FROM device_events e"
            " JOIN incidents i ON i.source_event_id = e.event_id"
            " WHERE e.device_id = ANY($1::text[])",
            list(samples.published_at),
        )
    got = [(samples.published_at[r["device_id"]], r["received"], r["opened"]) for r in rows]
    samples.stages_ms = {
        "publish_to_ingest": [(float(received) - sent) * 1000 for sent, received, _ in got],
        "ingest_to_opened": [
            (float(opened) - float(received)) * 1000 for _, received, opened in got
        ],
    }


async def _wait_position(s: Settings) -> None:
    r = aioredis.Redis.from_url(s.redis_url)
    try:
        await poll_until(lambda: r.hget(s.keys.caregiver("bench-cg"), "ts"), 30, "the position")
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
