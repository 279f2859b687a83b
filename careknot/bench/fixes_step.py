"""The fixes worker's batch step timed alone: CPU per fix in the worker's own code.

``careknot bench ingest`` measures the whole system, where every process shares two cores and
the figures of one part move with the others. This runs the ``fixes`` agent's step
(:class:`streams.fix_flow.FixPipeline`: decode, screen, the live index and history, the visits)
in this process against the real Redis and Postgres, on the ingest benchmark's road load
(:mod:`simulators.load`: caregivers driving past the agency's 2,000 homes), packed into
Kafka values as ingest packs them, and reports the process's CPU per fix and the servers' (from
``/proc``), after a first fix of every caregiver has warmed the caches. Every fix is checked
into the history before the namespace is dropped.

Options (``careknot bench fixes-step --help``): ``--caregivers N``, ``--steps N`` (fixes
each), ``--batch N`` (fixes per batch the agent takes), ``--per-message N``.
"""

from __future__ import annotations

import argparse
import resource
import secrets
import time
from typing import Any

import orjson

from adapters.storage.namespace import drop_namespace
from careknot.bench import command, cpu, own_options
from careknot.bench.report import machine, write
from ingest.batching import FixBatches
from ingest.fast_path import fast_fix
from ingest.parse import Limits, route
from kernel import heap
from kernel.settings import Settings
from simulators.load import AGENCY, TST_SPAN_S, caregiver_ids, fix_payload, seed
from streams.fix_flow import FixPipeline
from streams.runtime import Runtime


def values(ids: list[str], steps: int, per_message: int, now: float) -> list[bytes]:
    """The load's fixes as ingest makes them (its fast path, from the phones' payloads) and
    packs them for Kafka: each step of every caregiver in turn."""
    base, limits, packed = int(now) - TST_SPAN_S, Limits(), FixBatches(1, per_message)
    for step in range(steps):
        for i, cg in enumerate(ids):
            made = fast_fix(
                route(f"ck/{AGENCY}/cg/{cg}/loc"), fix_payload(i, step, base), now, limits
            )
            if made is None:
                raise ValueError(f"ingest would not take the load's fix {cg}:{step}")
            packed.add(cg, made)
    return [value for _, _, value in packed.drain()]


async def run(settings: Settings, args: argparse.Namespace) -> int:
    opts = own_options("fixes-step", args)
    s = settings.model_copy(update={"namespace": f"benchfs{secrets.token_hex(3)}"})
    rt = Runtime(s, dispatching=False, counting_fixes=False)
    try:
        figures = await _measure(rt, s, opts)
    finally:
        await rt.close()
        await drop_namespace(s)
    figures["command"] = command("fixes-step", opts)
    path = write(args.output, "bench-fixes-step.json", figures)
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    print(f"written to {path}")
    return 0 if figures["lost"] == 0 else 1


async def _measure(rt: Runtime, s: Settings, opts: argparse.Namespace) -> dict[str, Any]:
    await rt.ready()
    await rt.db.migrate()
    ids = caregiver_ids(opts.caregivers)
    await seed(rt.db, ids)
    pipeline = FixPipeline(rt, s)
    packed = values(ids, opts.steps, opts.per_message, time.time())
    per_batch = max(1, opts.batch // opts.per_message)
    batches = [packed[n : n + per_batch] for n in range(0, len(packed), per_batch)]
    warm = -(-opts.caregivers // (per_batch * opts.per_message))  # every caregiver's first fix
    for batch in batches[:warm]:
        await pipeline.handle(batch)
    heap.settle()  # as the worker does once started
    servers = cpu.roles([])
    before, cpu_before, wall = _cpu_s(), cpu.cpu_by_role(servers), time.perf_counter()
    for batch in batches[warm:]:
        await pipeline.handle(batch)
    wall, used = time.perf_counter() - wall, _cpu_s() - before
    timed = (len(packed) - warm * per_batch) * opts.per_message
    in_history = await rt.db.pool.fetchval("SELECT count(*) FROM fixes")
    return {
        "benchmark": "fixes-step",
        "fixes": timed,
        "cpu_us_per_fix": round(1e6 * used / timed, 1),
        "wall_us_per_fix": round(1e6 * wall / timed, 1),
        "servers_cpu_us_per_fix": cpu.per_fix_us(cpu_before, cpu.cpu_by_role(servers), timed),
        "lost": opts.caregivers * opts.steps - int(in_history),
        "options": vars(opts),
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
