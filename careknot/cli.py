"""The ``careknot`` command line: one verb per service, plus the tools around them."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from alarms.ladder import NOTIFIED, RUNGS
from alarms.lifecycle import SEVERITIES
from careknot.bench import BENCHMARKS, options
from careknot.restarts import RestartPolicy
from kernel.settings import Settings

log = logging.getLogger(__name__)


def _run(coro: Coroutine[Any, Any, int | None]) -> int:
    """Run a service until it returns, or until SIGINT/SIGTERM cancel it cleanly."""

    async def main() -> int:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            return await task or 0
        except asyncio.CancelledError:
            return 0

    return asyncio.run(main())


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from careknot.up import up

    policy = RestartPolicy(give_up_after=args.give_up_after, steady_after_s=args.steady_after)
    simulate_args = []
    if args.resident_fall_after is not None:
        simulate_args += ["--resident-fall-after", str(args.resident_fall_after)]
    return up(
        settings,
        simulate=args.simulate,
        state_file=args.state_file,
        policy=policy,
        simulate_args=simulate_args,
    )


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.service import run

    return _run(run(settings, streams=args.streams))


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker import run

    return run(settings, role=args.role, loglevel=args.log_level)


def cmd_gateway(args: argparse.Namespace, settings: Settings) -> int:
    from ws_gateway.server import run

    return _run(run(settings))


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from api.app import run

    return run(settings)


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from simulators.population import CityConfig
    from simulators.simulate import run

    config = CityConfig(
        caregivers=args.caregivers,
        homes=args.homes,
        fix_interval_s=args.fix_interval,
        falls_per_minute=args.falls_per_minute,
        seed=args.seed,
        residents=not args.no_residents,
        resident_anomaly_rate=args.resident_anomaly_rate,
        resident_fall_after_min=args.resident_fall_after,
    )
    return _run(run(settings, config))


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.storage.postgres import Database

    async def migrate() -> int:
        async with Database(settings) as db:
            applied = await db.migrate()
        print(f"schema {settings.namespace}: applied {applied or 'nothing (up to date)'}")
        return 0

    return _run(migrate())


def cmd_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from careknot.rebuild import run

    return _run(run(settings))


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from kernel import tokens
    from kernel.errors import AuthError

    if args.revoke:
        return _run(_revoke(settings, args.role, args.subject))
    try:
        ring = tokens.require_keyring(settings)
    except AuthError as exc:
        print(f"careknot token: {exc}", file=sys.stderr)
        return 1
    if not args.agency:
        print("careknot token: --agency is needed to issue a token", file=sys.stderr)
        return 2
    ttl = args.ttl or settings.token_ttl_s
    now = time.time()
    print(tokens.mint(ring, args.role, args.subject, args.agency, ttl, now, args.patient))
    return 0


async def _revoke(settings: Settings, role: str, subject: str) -> int:
    """Every token of the person's sign-ins until now (renewed ones too) is refused from now
    on, and the gateways close her open connections."""
    from adapters.storage.connection import RedisConnection

    redis = RedisConnection.open(settings.redis_url)
    try:
        at = await redis.revocations(settings.keys).revoke(role, subject, time.time())
    finally:
        await redis.close()
    print(f"{role} {subject}: tokens of sign-ins until {at:.0f} revoked")
    return 0


def cmd_incident(args: argparse.Namespace, settings: Settings) -> int:
    from careknot.timeline import show

    return _run(show(settings, args.incident_id))


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from careknot.report import report_visits

    async def report() -> int:
        text = await report_visits(settings, args.agency, args.start, args.end, args.format)
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0

    return _run(report())


def cmd_visit(args: argparse.Namespace, settings: Settings) -> int:
    """A person's check-in or check-out when GPS failed: recorded with the reason, for review."""
    from adapters.storage.connection import RedisConnection
    from adapters.storage.postgres import Database
    from streams.visit_keeper import VisitKeeper

    async def record() -> int:
        redis = RedisConnection.open(settings.redis_url)
        try:
            async with Database(settings) as db:
                keeper = VisitKeeper(settings, db, redis)
                at = args.at if args.at is not None else time.time()
                kind = args.action.replace("-", "_")
                done = await keeper.manual(args.visit_id, kind, args.reason, at)
        finally:
            await redis.close()
        if done is None:
            print(
                f"visit {args.visit_id}: unknown, or {args.action} does not apply now",
                file=sys.stderr,
            )
            return 1
        print(f"visit {args.visit_id}: {done.state} (manual, for review: {args.reason})")
        return 0

    return _run(record())


def cmd_deadletter(args: argparse.Namespace, settings: Settings) -> int:
    from careknot.deadletter import run

    return _run(run(settings, args))


def cmd_alarms(args: argparse.Namespace, settings: Settings) -> int:
    from careknot.alarms import run

    return _run(run(settings, args))


def cmd_routines(args: argparse.Namespace, settings: Settings) -> int:
    from careknot.routines import run

    return _run(run(settings, args))


def cmd_patient(args: argparse.Namespace, settings: Settings) -> int:
    from careknot.patients import run

    return _run(run(settings, args))


def cmd_retention(args: argparse.Namespace, settings: Settings) -> int:
    from careknot.retention import run

    return _run(run(settings, args))


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from careknot.bench import run_bench

    return _run(run_bench(settings, args))


def cmd_docs(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from careknot.protocol_docs import default_out, write

    out = Path(args.out) if args.out else default_out()
    stale = write(out, check=args.check)
    for name in stale:
        print(f"{out / name}: {'differs from the code' if args.check else 'written'}")
    return 1 if args.check and stale else 0


def _add_services(sub: Any) -> None:
    """``worker --role`` and ``ingest --streams``: the services ``careknot up`` runs, by part."""
    worker = sub.add_parser("worker", help="a Faust stream worker")
    worker.add_argument(
        "--role",
        choices=["all", "dispatch", "fixes", "devices"],
        default="all",
        help="dispatch: emergencies and answers; fixes: positions and visits; devices: the home"
        " devices' health (careknot up runs one of each); all: every one (do not mix with the"
        " others in one namespace)",
    )
    worker.set_defaults(func=cmd_worker)

    ingest = sub.add_parser("ingest", help="MQTT to Kafka ingest")
    ingest.add_argument(
        "--streams",
        choices=["all", "positions", "emergencies", "telemetry"],
        default="all",
        help="positions: fixes and phones' status; emergencies: device events; telemetry: vitals"
        " (careknot up runs one process of each, so an emergency never shares a process with"
        " the positions' or the vitals' flood)",
    )
    ingest.set_defaults(func=cmd_ingest)


def _add_deadletter(sub: Any) -> None:
    """``deadletter list|show|replay``: what the services refused, read and sent again."""
    deadletter = sub.add_parser("deadletter", help="what the services refused: list, show, replay")
    actions = deadletter.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("list", help="the latest letters: letter, time, reason, source, detail")
    ls.add_argument("--reason", help="only letters of this reason")
    ls.add_argument(
        "--source", help="only letters from this topic (Kafka: its logical name will do)"
    )
    ls.add_argument("--limit", type=int, default=50, help="the latest N (default %(default)s)")
    show = actions.add_parser("show", help="one letter whole, as JSON")
    show.add_argument("letter", help="PARTITION:OFFSET, as list shows it")
    replay = actions.add_parser(
        "replay",
        help="send letters back to the Kafka topic they came from, for the worker to take again",
    )
    replay.add_argument("letters", nargs="*", metavar="PARTITION:OFFSET")
    replay.add_argument("--reason", help="every letter of this reason not replayed yet")
    ls.set_defaults(func=cmd_deadletter)
    show.set_defaults(func=cmd_deadletter)
    replay.set_defaults(func=_replay_checked(replay))


def _replay_checked(
    parser: argparse.ArgumentParser,
) -> Callable[[argparse.Namespace, Settings], int]:
    """``deadletter replay`` takes letters or ``--reason``, one or the other."""

    def checked(args: argparse.Namespace, settings: Settings) -> int:
        if bool(args.letters) == bool(args.reason):
            parser.error("give the letters to replay or --reason, one of the two")
        return cmd_deadletter(args, settings)

    return checked


def _add_alarms(sub: Any) -> None:
    """``alarms ladder ...`` and ``alarms contact add|remove|list ...``: an agency's escalation
    ladders and the Apprise URLs its rungs beyond the dispatchers are told at."""
    alarms = sub.add_parser("alarms", help="an agency's escalation ladders and contacts")
    what = alarms.add_subparsers(dest="what", required=True)
    ladder = what.add_parser(
        "ladder",
        help="show an agency's ladders, or set one",
        description="With RUNG:SECONDS, set the agency's ladder for SEVERITY: each rung once, in"
        f" the order {', '.join(RUNGS)}, with the seconds after the raising when it is climbed"
        " (dispatchers:0 on_call:20 external:40). Without, show its ladders (the default where"
        " it set none).",
    )
    ladder.add_argument("agency", metavar="AGENCY")
    ladder.add_argument(
        "severity", nargs="?", choices=SEVERITIES, metavar="SEVERITY", help=", ".join(SEVERITIES)
    )
    ladder.add_argument("steps", nargs="*", metavar="RUNG:SECONDS")
    ladder.set_defaults(func=cmd_alarms)
    contact = what.add_parser("contact", help="the Apprise URLs an agency's rungs are told at")
    actions = contact.add_subparsers(dest="action", required=True)
    for action, text in (
        ("add", "tell URL at the agency's RUNG"),
        ("remove", "stop telling URL (as added, or as list shows it) at the agency's RUNG"),
    ):
        one = actions.add_parser(action, help=text)
        one.add_argument("agency")
        one.add_argument("rung", choices=NOTIFIED)
        one.add_argument("url", help="an Apprise URL (json://host/path, mailto://..., ...)")
        one.set_defaults(func=cmd_alarms)
    listed = actions.add_parser("list", help="the agency's contacts, credentials masked")
    listed.add_argument("agency")
    listed.set_defaults(func=cmd_alarms)


def _add_routines(sub: Any) -> None:
    """``routines show PATIENT`` and ``routines review AGENCY``: a home's model versions and
    alarm episodes; an agency's drifts for care review."""
    routines = sub.add_parser("routines", help="each home's routine: models, alarms, reviews")
    what = routines.add_subparsers(dest="what", required=True)
    show = what.add_parser("show", help="a home's model versions and routine alarm episodes")
    show.add_argument("patient", metavar="PATIENT")
    show.set_defaults(func=cmd_routines)
    review = what.add_parser("review", help="an agency's homes' drifts over days, for review")
    review.add_argument("agency", metavar="AGENCY")
    review.add_argument("--days", type=float, default=7.0, help="found in the last DAYS (7)")
    review.set_defaults(func=cmd_routines)


def _add_bench(sub: Any) -> None:
    """``bench NAME``: a parser per benchmark, so ``bench NAME --help`` lists its own options."""
    bench = sub.add_parser(
        "bench",
        help="measure a hot path",
        description="Measure a hot path: the benchmark prints its figures and writes them as JSON"
        " to --output. careknot bench NAME --help lists NAME's options.",
    )
    names = bench.add_subparsers(dest="what", required=True, metavar="NAME")
    for name, about in BENCHMARKS.items():
        own = names.add_parser(
            name,
            help=about.help,
            description=about.help,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        about.options(own)
        options.output(own)
    bench.set_defaults(func=cmd_bench)


def _add_simulate(sub: Any) -> None:
    sim = sub.add_parser("simulate", help="a simulated city of caregivers and homes")
    sim.add_argument("--caregivers", type=int, default=50)
    sim.add_argument("--homes", type=int, default=200)
    sim.add_argument("--fix-interval", type=float, default=3.0)
    sim.add_argument("--falls-per-minute", type=float, default=0.5)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument(
        "--no-residents",
        action="store_true",
        help="no resident living in the homes: no ambient sensors, no history seeded",
    )
    sim.add_argument(
        "--resident-anomaly-rate",
        type=float,
        default=0.0,
        metavar="R",
        help="anomalies a home-day in the residents' lives (none in the first 14 days of each"
        " 30; default %(default)s)",
    )
    _resident_fall_after(sim)
    sim.set_defaults(func=cmd_simulate)


def _resident_fall_after(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resident-fall-after",
        type=float,
        metavar="MINUTES",
        help="the simulated city: one resident falls silently MINUTES after it starts (the"
        " first seen up and about from then on) and lies still until help comes",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="careknot", description=__doc__)
    p.add_argument("-l", "--log-level", default="info")
    sub = p.add_subparsers(dest="verb", required=True)

    up = sub.add_parser("up", help="run the whole system on this machine")
    up.add_argument("--simulate", action="store_true", help="add the simulated city")
    up.add_argument(
        "--state-file",
        help="write the URLs, a dispatcher token and the services' pids and restarts here as JSON",
    )
    up.add_argument(
        "--give-up-after",
        type=int,
        default=RestartPolicy.give_up_after,
        metavar="N",
        help="a service that crashes is started again; after N quick failures in a row"
        " everything stops (default %(default)s)",
    )
    up.add_argument(
        "--steady-after",
        type=float,
        default=RestartPolicy.steady_after_s,
        metavar="S",
        help="a service that ran S seconds before it crashed counts its failures from one again"
        " (default %(default)s)",
    )
    _resident_fall_after(up)
    up.set_defaults(func=cmd_up)

    _add_services(sub)

    for verb, func, text in (
        ("gateway", cmd_gateway, "the WebSocket gateway and web console"),
        ("api", cmd_api, "the agencies' HTTP API (OpenAPI at /docs)"),
        ("migrate", cmd_migrate, "create or update the Postgres schema"),
        ("rebuild", cmd_rebuild, "rebuild the Redis live picture from Postgres"),
    ):
        sub.add_parser(verb, help=text).set_defaults(func=func)

    _add_simulate(sub)

    tok = sub.add_parser("token", help="issue a signed gateway token")
    tok.add_argument(
        "--role", required=True, choices=["caregiver", "family", "dispatcher", "admin"]
    )
    tok.add_argument("--subject", required=True)
    tok.add_argument("--agency", help="the agency the token is for (needed to issue one)")
    tok.add_argument("--patient", action="append", help="a relative a family member may see")
    tok.add_argument("--ttl", type=int, help="seconds (default: CAREKNOT_TOKEN_TTL_S)")
    tok.add_argument(
        "--revoke",
        action="store_true",
        help="revoke every token of ROLE SUBJECT signed in until now, renewed ones too (open"
        " connections close)",
    )
    tok.set_defaults(func=cmd_token)

    incident = sub.add_parser("incident", help="look into an incident")
    what = incident.add_subparsers(dest="what", required=True)
    timeline = what.add_parser("timeline", help="every step, from the event log")
    timeline.add_argument("incident_id")
    timeline.set_defaults(func=cmd_incident)

    report = sub.add_parser("report", help="reports from the record")
    kinds = report.add_subparsers(dest="what", required=True)
    visits = kinds.add_parser("visits", help="caregiver hours and visit punctuality")
    visits.add_argument("--agency", required=True)
    visits.add_argument("--from", dest="start", required=True, help="ISO 8601 (UTC if no zone)")
    visits.add_argument("--to", dest="end", required=True, help="ISO 8601, exclusive")
    visits.add_argument("--format", choices=["csv", "json"], default="csv")
    visits.set_defaults(func=cmd_report)

    visit = sub.add_parser("visit", help="a manual check-in or check-out, flagged for review")
    visit.add_argument("action", choices=["check-in", "check-out"])
    visit.add_argument("visit_id")
    visit.add_argument("--reason", required=True, help="why GPS could not tell (kept for review)")
    visit.add_argument("--at", type=float, help="epoch seconds (default: now)")
    visit.set_defaults(func=cmd_visit)

    _add_deadletter(sub)
    _add_alarms(sub)
    _add_routines(sub)
    _add_data(sub)
    _add_bench(sub)
    docs = sub.add_parser(
        "docs", help="write docs/asyncapi.json and docs/openapi.json from the code"
    )
    docs.add_argument("--out", help="the directory to write them to (default: docs/)")
    docs.add_argument(
        "--check", action="store_true", help="write nothing: exit 1 if they differ from the code"
    )
    docs.set_defaults(func=cmd_docs)
    return p


def _add_data(sub: Any) -> None:
    """``patient forget PATIENT`` and ``retention run``: patients' data shredded, old data
    deleted."""
    patient = sub.add_parser("patient", help="a patient's sealed data")
    forget = patient.add_subparsers(dest="what", required=True).add_parser(
        "forget", help="delete her data key: her sealed fields can never be read again"
    )
    forget.add_argument("patient", metavar="PATIENT")
    forget.add_argument("--actor", help="who asks (default: cli:USER), kept in the event log")
    forget.set_defaults(func=cmd_patient)
    retention = sub.add_parser("retention", help="delete what is kept beyond its time")
    retention.add_subparsers(dest="what", required=True).add_parser(
        "run", help="old fixes and raw vitals deleted now"
    ).set_defaults(func=cmd_retention)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, parsed; ``--help`` and mistakes exit, as argparse does."""
    return _parser().parse_args(_old_separator_dropped(sys.argv[1:] if argv is None else argv))


def _old_separator_dropped(argv: list[str]) -> list[str]:
    """A benchmark's options used to be given after a ``--`` (``careknot bench dispatch --
    --fall-load 0``, as the benchmarks' history records them): that still works."""
    if "bench" in argv and "--" in argv[argv.index("bench") :]:
        at = argv.index("--", argv.index("bench"))
        return argv[:at] + argv[at + 1 :]
    return argv


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # websockets logs every HTTP request as "connection rejected (200 OK)": keep that at debug
    logging.getLogger("websockets.server").setLevel(max(logging.WARNING, logging.root.level))
    func: Callable[[argparse.Namespace, Settings], int] = args.func
    return func(args, Settings())


if __name__ == "__main__":
    sys.exit(main())
