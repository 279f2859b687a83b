"""Ingest throughput: caregivers' fixes over MQTT into the live index (Redis) and the history
(Postgres), through the whole system (``careknot up``: ingest, the Faust worker, the gateway).

Publisher processes send one OwnTracks-style fix per MQTT message (QoS 0), as phones do, at a
fixed offered rate for a fixed time; each caregiver's ``tst`` goes up by one second a fix and
she moves a few metres, so the quality filters accept every fix. A run is complete when every
fix is in the history and every caregiver's last fix is her live position. Latency is from
the publish to the position being visible in Redis, for a sample of caregivers polled every
:data:`POLL_S`. Rates climb until one is not kept up with (or loses fixes): saturation.

Options (``careknot bench ingest --help``): ``--rates 1000,5000,...``, ``--duration S``,
``--caregivers N``, ``--publishers N``, ``--ingest N`` and ``--workers N`` (processes in all:
the bench starts those beyond ``careknot up``'s one of each), ``--keep-going``.

Each run also reports the CPU microseconds one fix cost in each part of the system
(:mod:`careknot.bench.cpu`: ingest, worker, kafka, mqtt, redis, postgres, bench = the publishers
and the sampler), from the processes' CPU time between the start of the run and its end; the
servers' figures include whatever else used them meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from adapters.mqtt.access import credentials
from adapters.storage.namespace import drop_namespace
from adapters.storage.postgres import Database
from careknot.bench import cpu, own_options
from careknot.bench.report import latency_figures, machine, write
from careknot.running import RunningSystem, isolated, worker_ready
from careknot.up import settings_env
from kernel.settings import Settings
from kernel.waiting import poll_until
from simulators.load import (
    AGENCY,
    TST_SPAN_S,
    Share,
    caregiver_ids,
    fix_tst,
    publish,
    seed,
    start_time,
)

log = logging.getLogger(__name__)

SAMPLED = 50
POLL_S = 0.02
KEPT_UP_S = 2.0  # a run keeps up if everything is in within this after the last publish
SAMPLE_RATE = 5000
READY_TIMEOUT_S = 90.0


@dataclass
class Run:
    offered: int
    published: int
    published_rate: float
    in_history: int
    lost: int
    stale_live: int
    drain_s: float
    throughput: float
    kept_up: bool
    latency: dict[str, float]
    cpu_us_per_fix: dict[str, float]


class Bench:
    """One system under load: seeds it, runs rates one after the other, checks every fix."""

    def __init__(self, s: Settings, opts: argparse.Namespace, pool: ProcessPoolExecutor) -> None:
        self.s, self.opts, self.pool = s, opts, pool
        self.ids = caregiver_ids(opts.caregivers)
        self.base_tst = int(time.time()) - TST_SPAN_S
        self.step = 0
        self.redis: aioredis.Redis = aioredis.Redis.from_url(s.redis_url)
        self.db = Database(s, max_size=2)

    async def seed(self) -> None:
        await self.db.__aenter__()
        await seed(self.db, self.ids)

    async def close(self) -> None:
        await self.redis.aclose()
        await self.db.__aexit__(None, None, None)

    async def run(self, rate: int, duration: float) -> Run:
        p = self.opts.publishers
        steps = max(1, round(rate * duration / len(self.ids)))
        start_at = start_time(steps * len(self.ids) // p + 1)
        shares = [self._share(k, p, steps, rate / p, start_at) for k in range(p)]
        before = await self._history_count()
        pids = cpu.roles([os.getpid()])
        cpu_before = cpu.cpu_by_role(pids)
        sampler = asyncio.create_task(self._sample(self.step + steps))
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(
            *(loop.run_in_executor(self.pool, publish, sh) for sh in shares)
        )
        published = sum(r[0] for r in results)
        publish_s = max(r[1] for r in results)
        last_tst = fix_tst(self.base_tst, self.step + steps - 1)
        done_at = await self._until_complete(last_tst, duration)
        used = cpu.per_fix_us(cpu_before, cpu.cpu_by_role(pids), published)
        seen = await sampler
        self.step += steps
        timing = (start_at, publish_s, done_at)
        run = await self._run_figures(rate, results, published, timing, seen, before)
        run.cpu_us_per_fix.update(used)
        return run

    def _share(self, k: int, p: int, steps: int, rate: float, start_at: float) -> Share:
        mine = self.ids[k::p]
        return Share(
            self.s.mqtt_host, self.s.mqtt_port, mine, steps, rate, start_at,
            self.step, self.base_tst, [cg for cg in mine if cg in self.ids[:SAMPLED]],
            credentials(self.s),
        )  # fmt: skip

    async def _run_figures(
        self,
        rate: int,
        results: list[tuple[int, float, list[tuple[str, int, float]]]],
        published: int,
        timing: tuple[float, float, float | None],
        seen: dict[tuple[str, int], float],
        before: int,
    ) -> Run:
        start_at, publish_s, done_at = timing
        in_history = await self._history_count() - before
        lags = [
            (seen[(cg, tst)] - at) * 1000
            for r in results
            for cg, tst, at in r[2]
            if (cg, tst) in seen
        ]
        drain = (done_at - (start_at + publish_s)) if done_at else float("inf")
        return Run(
            offered=rate,
            published=published,
            published_rate=round(published / publish_s, 1),
            in_history=in_history,
            lost=published - in_history,
            stale_live=await self._stale_live(),
            drain_s=round(drain, 2),
            throughput=round(published / (done_at - start_at), 1) if done_at else 0.0,
            kept_up=done_at is not None and drain <= KEPT_UP_S and in_history == published,
            latency=latency_figures(lags, "publish_to_redis") if lags else {},
            cpu_us_per_fix={},
        )

    async def _history_count(self) -> int:
        n = await self.db.pool.fetchval("SELECT count(*) FROM fixes WHERE agency_id = $1", AGENCY)
        return int(n)

    async def _until_complete(self, last_tst: int, duration: float) -> float | None:
        """When the history held every caregiver's last fix (``last_tst``), or None if it did
        not in time. (Each caregiver's fixes are kept in order, and the run's count of all of
        them, once complete, tells what was lost; counting every row while the system drains
        would scan the whole table every poll, and the benchmark would load Postgres.)"""
        query = "SELECT count(*) FROM fixes WHERE caregiver_id = ANY($1::text[]) AND ts = $2"
        at = datetime.fromtimestamp(last_tst, UTC)

        async def complete() -> float | None:
            found = await self.db.pool.fetchval(query, self.ids, at)
            return time.time() if found == len(self.ids) else None

        try:
            return await poll_until(complete, max(15.0, 2 * duration), "the history")
        except TimeoutError:
            return None

    async def _stale_live(self) -> int:
        """Caregivers whose live position is not their last fix published so far."""
        last = fix_tst(self.base_tst, self.step - 1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for cg in self.ids:
                pipe.hget(self.s.keys.caregiver(cg), "ts")
            values = await pipe.execute()
        return sum(1 for v in values if v is None or float(v) != float(last))

    async def _sample(self, end_step: int) -> dict[tuple[str, int], float]:
        """When each new position of the sampled caregivers became visible, until the last."""
        sampled, last_tst = self.ids[:SAMPLED], fix_tst(self.base_tst, end_step - 1)
        seen: dict[tuple[str, int], float] = {}
        deadline = time.monotonic() + 30 + 3 * self.opts.duration
        while time.monotonic() < deadline:
            async with self.redis.pipeline(transaction=False) as pipe:
                for cg in sampled:
                    pipe.hget(self.s.keys.caregiver(cg), "ts")
                values = await pipe.execute()
            now = time.time()
            for cg, v in zip(sampled, values, strict=True):
                if v is not None:
                    seen.setdefault((cg, int(float(v))), now)
            if all((cg, last_tst) in seen for cg in sampled):
                break
            await asyncio.sleep(POLL_S)  # the sampling period
        return seen


async def run(settings: Settings, args: argparse.Namespace) -> int:
    opts = own_options("ingest", args)
    workdir = Path(tempfile.mkdtemp(prefix="careknot-bench-ingest-"))
    bench_settings = isolated(settings, workdir, ingest_metrics_port=0)
    system = RunningSystem(bench_settings, workdir, simulate=False)
    s = await asyncio.to_thread(system.__enter__)
    extras = _start_extras(s, opts, workdir)
    try:
        runs = await _measure(s, opts)
    except BaseException:
        log.error("the system said:\n%s", system.log_tail())
        raise
    finally:
        _stop(extras)
        await asyncio.to_thread(system.__exit__, None, None, None)
        await drop_namespace(s)
    return _report(opts, runs, args.output)


def _start_extras(
    s: Settings, opts: argparse.Namespace, workdir: Path
) -> list[subprocess.Popen[bytes]]:
    """The ingest and fixes-worker processes beyond ``careknot up``'s one of each."""
    ingest, fixes_worker = ["ingest", "--streams", "positions"], ["worker", "--role", "fixes"]
    commands = [ingest] * (opts.ingest - 1) + [fixes_worker] * (opts.workers - 1)
    procs = []
    for n, command in enumerate(commands):
        env = {**os.environ, **settings_env(s), "CAREKNOT_WORKER_DATADIR": str(workdir / f"w{n}")}
        env["CAREKNOT_INGEST_CLIENT_ID"] = f"careknot-{s.namespace}-ingest-{n + 1}"  # its own
        argv = [sys.executable, "-m", "careknot.cli", "-l", "warning", *command]
        out = (workdir / f"{command[0]}-{n}.log").open("wb")
        procs.append(subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT))
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _measure(s: Settings, opts: argparse.Namespace) -> list[Run]:
    await worker_ready(s, READY_TIMEOUT_S)
    with ProcessPoolExecutor(opts.publishers, mp_context=get_context("spawn")) as pool:
        bench = Bench(s, opts, pool)
        await bench.seed()
        try:
            warm = await bench.run(len(bench.ids), 1.0)  # one fix each: caches, partitions
            log.info("warm-up: %s", warm)
            runs: list[Run] = []
            for rate in (int(r) for r in opts.rates.split(",")):
                runs.append(await bench.run(rate, opts.duration))
                print(orjson.dumps(asdict(runs[-1])).decode(), flush=True)
                if not runs[-1].kept_up and not opts.keep_going:
                    break
        finally:
            await bench.close()
    return runs


def _report(opts: argparse.Namespace, runs: list[Run], output: str) -> int:
    kept = [r for r in runs if r.kept_up]
    at_sample = next((r for r in runs if r.offered == SAMPLE_RATE), None)
    figures: dict[str, Any] = {
        "benchmark": "ingest",
        "sustained_fixes_per_s": max((r.published_rate for r in kept), default=0.0),
        "lost": sum(r.lost for r in runs),
        "p50_ms": at_sample.latency.get("publish_to_redis_p50_ms") if at_sample else None,
        "p99_ms": at_sample.latency.get("publish_to_redis_p99_ms") if at_sample else None,
        "options": {k: v for k, v in vars(opts).items()},
        "runs": [asdict(r) for r in runs],
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = write(output, "bench-ingest.json", figures)
    _plot(runs, Path(output) / "bench-ingest.png")
    summary = {k: figures[k] for k in ("sustained_fixes_per_s", "lost", "p50_ms", "p99_ms")}
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    print(f"written to {path} and bench-ingest.png beside it")
    return 0


def _plot(runs: list[Run], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    offered = [r.offered for r in runs]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    top.plot(offered, offered, "k:", label="offered")
    top.plot(offered, [r.throughput for r in runs], "o-", label="end to end (all in Postgres)")
    top.set_ylabel("fixes/s")
    top.legend()
    for key, style in (("p50", "o-"), ("p99", "s--")):
        values = [r.latency.get(f"publish_to_redis_{key}_ms", float("nan")) for r in runs]
        bottom.plot(offered, values, style, label=f"{key} publish to Redis")
    bottom.set_yscale("log")
    bottom.set_ylabel("ms")
    bottom.set_xlabel("offered fixes/s")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)
