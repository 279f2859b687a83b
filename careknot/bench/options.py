"""Each benchmark's own options, for ``careknot bench NAME`` (and ``--help``) to list.

They live here rather than beside each benchmark's code so that the command line can build every
benchmark's parser without importing what the benchmarks measure with (Redis, Kafka, MQTT,
numpy), which every ``careknot`` process, the services included, would otherwise load.
"""

from __future__ import annotations

from argparse import ArgumentParser


def output(p: ArgumentParser) -> None:
    """Every benchmark's: where its JSON goes."""
    p.add_argument("--output", default="bench-results", help="directory for the JSON")


def fall_to_offer(p: ArgumentParser) -> None:
    p.add_argument("--falls", type=int, default=100, help="how many falls, one after another")
    p.add_argument(
        "--load",
        type=int,
        default=0,
        metavar="FIXES_PER_S",
        help="fixes a second that other phones publish meanwhile, if any",
    )
    p.add_argument(
        "--load-caregivers", type=int, default=5000, help="how many phones publish that load"
    )


def dispatch(p: ArgumentParser) -> None:
    p.add_argument("--caregivers", type=int, default=100_000, help="live caregivers in England")
    p.add_argument("--agencies", type=int, default=20, help="agencies they are shared among")
    p.add_argument("--searches", type=int, default=2000, help="homes searched around, in turn")
    p.add_argument("--k", type=int, default=10, help="how many nearest are compared")
    p.add_argument("--radius-km", type=float, default=10.0, help="compared within this")
    p.add_argument("--seed", type=int, default=7, help="where caregivers and homes are placed")
    p.add_argument(
        "--fall-load",
        type=int,
        default=5000,
        metavar="FIXES_PER_S",
        help="part (2), fall to offer: fixes a second meanwhile; 0 skips part (2)",
    )
    p.add_argument("--falls", type=int, default=100, help="part (2): how many falls")


def geofence(p: ArgumentParser) -> None:
    p.add_argument("--fences", type=int, default=50_000, help="homes' fences in the index")
    p.add_argument("--fixes", type=int, default=200_000, help="fixes evaluated each round")
    p.add_argument("--polygons", type=float, default=0.2, help="share of fences that are polygons")
    p.add_argument("--batch", type=int, default=1000, help="fixes per call, as an agent takes them")
    p.add_argument("--rounds", type=int, default=5, help="timed passes over the fixes (median)")
    p.add_argument("--naive-sample", type=int, default=100, help="fixes the naive loop tests")
    p.add_argument(
        "--radius-km", type=float, default=40.0, help="radius of the region the homes are in"
    )
    p.add_argument("--seed", type=int, default=7, help="the simulated city and its fixes")


def ingest(p: ArgumentParser) -> None:
    p.add_argument(
        "--rates",
        default="1000,2500,5000,10000,15000,20000,30000",
        help="offered fixes a second, in turn (comma-separated)",
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds per rate")
    p.add_argument("--caregivers", type=int, default=2000, help="phones publishing")
    p.add_argument("--publishers", type=int, default=2, help="publisher processes")
    p.add_argument("--ingest", type=int, default=1, help="ingest processes in all")
    p.add_argument("--workers", type=int, default=1, help="fixes workers in all")
    p.add_argument("--keep-going", action="store_true", help="past the first saturated rate")


def fixes_step(p: ArgumentParser) -> None:
    p.add_argument("--caregivers", type=int, default=2000, help="phones on the road load")
    p.add_argument("--steps", type=int, default=20, help="fixes of each caregiver")
    p.add_argument("--batch", type=int, default=1000, help="fixes per batch the agent takes")
    p.add_argument("--per-message", type=int, default=100, help="fixes per Kafka value")


FUZZ_TARGETS = (
    "location", "device-event", "telemetry", "device-status", "presence", "owntracks", "topic",
    "mqtt-frames", "ws-frame", "token", "token-claims",
)  # fmt: skip
"""The names of :data:`careknot.bench.fuzz_targets.TARGETS` (a test holds them the same)."""


def fuzz(p: ArgumentParser) -> None:
    p.add_argument(
        "--inputs", type=int, default=1_000_000, help="inputs in all, shared among the targets"
    )
    p.add_argument(
        "--targets",
        default="all",
        help=f"comma-separated, of {', '.join(FUZZ_TARGETS)}; or all",
    )
    p.add_argument("--seed", type=int, default=1, help="the fuzzer's random seed")


FAULT_SCENARIOS = (
    "baseline", "kill-mosquitto", "kill-redis", "kill-postgres", "kill-tansu", "kill-ingest",
    "kill-ingest-emergencies", "kill-worker-dispatch", "kill-worker-fixes", "kill-gateway",
    "proxy-postgres-latency", "proxy-postgres-reset", "proxy-postgres-blackhole",
    "proxy-redis-latency", "proxy-redis-reset", "proxy-redis-blackhole",
)  # fmt: skip
"""The names of :data:`careknot.faults.scenarios.SCENARIOS` (a test holds them the same)."""


def faults(p: ArgumentParser) -> None:
    p.add_argument(
        "--scenarios",
        default="all",
        help=f"comma-separated, of {', '.join(FAULT_SCENARIOS)}; or all",
    )
    p.add_argument("--events", type=int, default=10_000, help="fixes and falls in each stream")
    p.add_argument("--rate", type=float, default=500.0, help="events a second")
    p.add_argument("--falls", type=int, default=100, help="falls among the events")
    p.add_argument("--caregivers", type=int, default=10, help="caregivers taking the falls")
    p.add_argument("--load-caregivers", type=int, default=500, help="phones driving the load")
    p.add_argument("--down", type=float, default=1.0, help="seconds a killed server stays down")
    p.add_argument("--proxy-seconds", type=float, default=10.0, help="how long a proxy misbehaves")


def devices(p: ArgumentParser) -> None:
    p.add_argument(
        "--homes", type=int, default=2000, help="homes, each a vitals monitor and a motion sensor"
    )
    p.add_argument("--seconds", type=float, default=30.0, help="how long the load lasts")
    p.add_argument("--telemetry", type=int, default=10_000, help="vitals readings a second")
    p.add_argument("--events", type=int, default=2000, help="motion events a second")
    p.add_argument("--fixes", type=int, default=5000, help="caregivers' fixes a second meanwhile")
    p.add_argument(
        "--alarms",
        type=float,
        default=10.0,
        help="tampered dispensers a second, timed to their alarm frame",
    )
    p.add_argument(
        "--doses",
        type=int,
        default=100,
        help="doses whose windows close untaken over the run, timed to their missed frame",
    )


def anomaly(p: ArgumentParser) -> None:
    p.add_argument("--homes", type=int, default=100, help="simulated homes, a resident each")
    p.add_argument("--days", type=int, default=60, help="days each home is simulated")
    p.add_argument("--seed", type=int, default=11, help="the residents, their days and anomalies")
    p.add_argument(
        "--learn-days",
        type=int,
        default=14,
        help="first days of each home only learnt from, not scored (they carry no anomaly)",
    )


def gateway(p: ArgumentParser) -> None:
    p.add_argument("--connections", type=int, default=10_000, help="WebSocket clients in all")
    p.add_argument("--clients", type=int, default=2, help="client processes they are opened from")
    p.add_argument("--agencies", type=int, default=5, help="agencies the clients belong to")
    p.add_argument("--dispatchers", type=int, default=200, help="dispatchers among the clients")
    p.add_argument("--at-once", type=int, default=100, help="handshakes at once per process")
    p.add_argument("--idle-seconds", type=float, default=5.0, help="idle before memory is read")
    p.add_argument("--rate", type=float, default=200.0, help="timed frames a second")
    p.add_argument("--seconds", type=float, default=20.0, help="how long they are sent")
    p.add_argument("--sample", type=int, default=1000, help="recipients the frames go to")
    p.add_argument(
        "--compression",
        choices=("on", "off", "both"),
        default="both",
        help="whether the gateway offers permessage-deflate; both: a gateway each, in turn",
    )
    p.add_argument(
        "--city",
        action="store_true",
        help="the simulated city runs meanwhile (the whole system), its dispatchers among the"
        " clients",
    )
    p.add_argument(
        "--city-warm",
        type=float,
        default=240.0,
        help="with --city: seconds it runs before the clients open (its first minutes, which"
        " publish every resident's history, load the machine far more than its day)",
    )
