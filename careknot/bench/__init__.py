"""``careknot bench NAME``: measure hot paths; each prints its figures and writes them as JSON.

Each benchmark is a module here with ``async def run(settings, args) -> int``, and its own
options in :mod:`careknot.bench.options`; ``careknot bench NAME --help`` lists them.
``args.output`` is the directory to write to. The benchmark reads its options with
:func:`own_options`: as ``careknot bench NAME`` parsed them into ``args``, or, when a caller
built ``args`` itself, from a list of strings in ``args.extra``, with the defaults for the rest.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from careknot.bench import options
from kernel.settings import Settings


@dataclass(frozen=True, slots=True)
class Benchmark:
    module: str
    help: str
    options: Callable[[argparse.ArgumentParser], None]


BENCHMARKS = {
    "fall-to-offer": Benchmark(
        "careknot.bench.fall_to_offer",
        "a fall on MQTT to the offer on the WebSocket, through the whole system: p50/p99",
        options.fall_to_offer,
    ),
    "dispatch": Benchmark(
        "careknot.bench.dispatch",
        "candidate search over live caregivers across England (the dispatcher's, Redis"
        " GEOSEARCH, PostGIS), then fall to offer under load",
        options.dispatch,
    ),
    "geofence": Benchmark(
        "careknot.bench.geofence",
        "fix evaluations a second of the fence index on one core, against a naive loop",
        options.geofence,
    ),
    "ingest": Benchmark(
        "careknot.bench.ingest",
        "fixes over MQTT into Redis and Postgres through the whole system: rates kept up,"
        " latency, CPU per fix in each process",
        options.ingest,
    ),
    "fixes-step": Benchmark(
        "careknot.bench.fixes_step",
        "the fixes worker's step alone against the real Redis and Postgres: CPU per fix",
        options.fixes_step,
    ),
    "fuzz": Benchmark(
        "careknot.bench.fuzz",
        "every parser at the edges (MQTT payloads, topics and framing, WebSocket frames, tokens)"
        " under atheris: inputs a second, and that only typed errors escape",
        options.fuzz,
    ),
    "faults": Benchmark(
        "careknot.bench.faults",
        "the whole system at load on servers of its own, one fault a scenario (kill -9 of a"
        " server or service, a proxy adding latency, resets, a blackhole): published against"
        " what reached Postgres, Redis and the WebSocket, and the time to recover",
        options.faults,
    ),
    "devices": Benchmark(
        "careknot.bench.devices",
        "home devices at scale through the whole system beside caregivers' fixes: telemetry and"
        " events a second kept with nothing lost, event to alarm frame p50/p99, how late a"
        " missed dose is told after its window closes",
        options.devices,
    ),
    "anomaly": Benchmark(
        "careknot.bench.anomaly",
        "simulated residents' days, each home's routine models trained walk-forward and scored"
        " every 5 minutes: recall, delay and false alarms per home-day per anomaly kind, each"
        " model beside the fixed rule, and homes scored a second on one core",
        options.anomaly,
    ),
    "gateway": Benchmark(
        "careknot.bench.gateway",
        "WebSocket clients one gateway process holds: memory per idle connection, and the"
        " delivery latency from the outbox to them, p50/p99, with and without compression",
        options.gateway,
    ),
}


def own_options(name: str, args: argparse.Namespace) -> argparse.Namespace:
    """Benchmark ``name``'s own options, from ``args`` (or ``args.extra``), defaults for the
    rest; nothing else (no ``--output``, nor the command line's other arguments)."""
    p = argparse.ArgumentParser(prog=f"careknot bench {name}")
    BENCHMARKS[name].options(p)
    own = vars(p.parse_args([]))
    given = argparse.Namespace(**{k: v for k, v in vars(args).items() if k in own})
    return p.parse_args(getattr(args, "extra", None) or [], namespace=given)


def command(name: str, opts: argparse.Namespace) -> str:
    """The command that repeats a run with options ``opts``, each one spelled out."""
    spelled = [f"careknot bench {name}"]
    for dest, value in vars(opts).items():
        flag = "--" + dest.replace("_", "-")
        if value is True:
            spelled.append(flag)
        elif value is not False:
            spelled.append(f"{flag} {value}")
    return " ".join(spelled)


async def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    module = importlib.import_module(BENCHMARKS[args.what].module)
    run: Callable[[Settings, argparse.Namespace], Awaitable[int]] = module.run
    return await run(settings, args)
