"""The fault scenarios: what each breaks, and how one is run and counted.

A scenario runs the whole system (``careknot up``, its services supervised and started again
when they crash) on servers of its own (:class:`careknot.faults.servers.FaultServers`), drives
it with phones' fixes and falls (:mod:`careknot.faults.load`), breaks one thing a third of the
way through the stream, and counts what was published against what reached Kafka (ingest
accepted it), Postgres (the history, the incidents), Redis (each caregiver's live position)
and the WebSocket (offers, results, incidents told):

- ``lost``: accepted and not in the record (a fix not in the history, a fall with no
  incident);
- ``duplicated``: a fall with two incidents, an offer told twice to its caregiver, an
  ``assigned`` told twice (to the caregiver or the dispatcher), within one stream (a client
  told ``resync`` is sent its stream again, which is counted apart as ``redelivered``);
- ``recovered_s``: from the fault's end (the server or service started again, the network
  healed) until a fix sent after it is in the history, a fall sent after it reached a
  caregiver's phone as an offer (or the dispatcher as escalated), and every client is
  connected again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncpg
import redis.asyncio as aioredis

from adapters.storage.namespace import drop_namespace
from adapters.storage.postgres import Database
from careknot.faults.load import (
    AGENCY,
    CaregiverPhone,
    Client,
    DispatcherConsole,
    FallDevices,
    FixKey,
    FixStream,
    KafkaTap,
    fall_caregiver,
    seed,
)
from careknot.faults.proxy import Mode, ProxyThread, TcpProxy
from careknot.faults.servers import FaultServers, Server
from careknot.running import RunningSystem, own_token_key, worker_ready
from careknot.servers import free_port
from kernel.settings import Settings
from simulators import load

log = logging.getLogger(__name__)

Fault = Literal["none", "server", "service", "proxy"]
READY_TIMEOUT_S = 90.0
POLL_S = 0.2
TAIL_FIX_RATE = 50.0  # the load's fixes a second after the stream, until the system is whole
TAIL_FALL_S = 1.0  # a fall this often after the stream, until the system is whole
QUIET_S = 1.0  # the record is complete once Kafka took nothing new this long, and holds it all
OFFER_WINDOW_S = 5.0  # severity 1: an offer nobody answers escalates after 3 waves, 15 s


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Fault
    target: str = ""
    mode: Mode = "pass"
    what: str = ""

    @property
    def proxied(self) -> str:
        return self.target if self.fault == "proxy" else ""


def _scenarios() -> dict[str, Scenario]:
    out = [Scenario("baseline", "none", what="no fault: the figures to compare with")]
    for server, name in (
        ("mqtt", "mosquitto"),
        ("redis", "redis"),
        ("postgres", "postgres"),
        ("kafka", "tansu"),
    ):
        out.append(Scenario(f"kill-{name}", "server", server, what=f"kill -9 {name}, restart"))
    for service in ("ingest", "ingest-emergencies", "worker-dispatch", "worker-fixes", "gateway"):
        out.append(
            Scenario(f"kill-{service}", "service", service, what=f"kill -9 {service}, restarted")
        )
    for server in ("postgres", "redis"):
        for mode in ("latency", "reset", "blackhole"):
            out.append(
                Scenario(f"proxy-{server}-{mode}", "proxy", server, mode, f"{mode} on {server}")
            )
    return {s.name: s for s in out}


SCENARIOS = _scenarios()
CI_SCENARIOS = ("kill-redis", "kill-postgres", "proxy-postgres-blackhole")


@dataclass(frozen=True)
class Options:
    events: int = 10_000
    """Fixes and falls in the stream (falls among them)."""
    rate: float = 500.0
    """Events a second."""
    falls: int = 100
    caregivers: int = 10
    """Caregivers near the homes, on the WebSocket, accepting every offer."""
    load_caregivers: int = 500
    fault_at: float = 1 / 3
    """Where in the stream the fault comes (a fraction of its length)."""
    down_s: float = 1.0
    """How long a killed server stays down before it is started again."""
    proxy_s: float = 10.0
    """How long the proxy misbehaves."""
    latency_s: float = 0.2
    recover_within_s: float = 90.0
    drain_within_s: float = 60.0

    @property
    def stream_s(self) -> float:
        return self.events / self.rate


# ---------------------------------------------------------------- one run


@dataclass
class Timeline:
    started: float = 0.0
    fault_at: float | None = None
    fault_end: float | None = None
    recovered_at: float | None = None
    stream_end: float | None = None
    notes: list[str] = field(default_factory=list)


class Run:
    """One scenario on ``servers``: its own namespace and ``careknot up``."""

    def __init__(
        self, scenario: Scenario, opts: Options, servers: FaultServers, base: Settings, wd: Path
    ) -> None:
        self.scenario, self.opts, self.servers, self.workdir = scenario, opts, servers, wd
        wd.mkdir(parents=True, exist_ok=True)
        self.direct = base.model_copy(
            update={
                "namespace": f"faults{secrets.token_hex(3)}",
                "mqtt_url": servers.urls["mqtt"],
                "mqtt_shared_subscriptions": True,
                "redis_url": servers.urls["redis"],
                "postgres_dsn": servers.urls["postgres"],
                "kafka_bootstrap": servers.urls["kafka"],
                "gateway_port": free_port(),
                "api_port": free_port(),
                # the clients mint their tokens with the system's own key
                "token_keys": base.token_keys or own_token_key(),
                "worker_datadir": str(wd / "worker"),
                "ingest_metrics_port": free_port(),
                "emergency_ingest_metrics_port": free_port(),
                "telemetry_ingest_metrics_port": free_port(),
                "worker_metrics_port": free_port(),
                "dispatch_metrics_port": free_port(),
                "offer_window_by_severity": {1: OFFER_WINDOW_S},
                "max_waves": 3,
            }
        )
        self.proxy: ProxyThread | None = None
        self.system_settings = self.direct
        if scenario.proxied:
            server: Server = "postgres" if scenario.target == "postgres" else "redis"
            port = free_port()
            self.proxy = ProxyThread(TcpProxy(port, servers.port(server), latency_s=opts.latency_s))
            url = servers.urls[server].replace(f":{servers.port(server)}", f":{port}")
            key = "postgres_dsn" if server == "postgres" else "redis_url"
            self.system_settings = self.direct.model_copy(update={key: url})
        self.load_ids = load.caregiver_ids(opts.load_caregivers)
        self.t = Timeline()
        self.system: RunningSystem | None = None

    async def run(self) -> dict[str, Any]:
        with contextlib.ExitStack() as stack:
            if self.proxy is not None:
                stack.enter_context(self.proxy)
            self.system = RunningSystem(self.system_settings, self.workdir, simulate=False)
            await asyncio.to_thread(self.system.__enter__)
            try:
                return await self._run()
            except BaseException:
                log.error("the system said:\n%s", self.system.log_tail())
                raise
            finally:
                await asyncio.to_thread(self.system.__exit__, None, None, None)
                with contextlib.suppress(Exception):
                    await drop_namespace(self.direct)

    async def _run(self) -> dict[str, Any]:
        s, opts = self.direct, self.opts
        await worker_ready(s, READY_TIMEOUT_S)
        async with Database(s, max_size=2) as db:
            homes = opts.falls + int(opts.recover_within_s / TAIL_FALL_S) + 10  # and the tail's
            await seed(db, self.load_ids, opts.caregivers, homes)
        tap = KafkaTap(s)
        phones = [CaregiverPhone(s, fall_caregiver(k)) for k in range(opts.caregivers)]
        console = DispatcherConsole(s)
        clients: list[Client] = [*phones, console]
        fixes = FixStream(s, self.load_ids, opts.caregivers, opts.rate)
        devices = FallDevices(s)
        tap.start()
        for c in clients:
            c.start()
        pg = Record(s)
        try:
            await _until(lambda: all(c.connected for c in clients), 30, "the clients connected")
            stream = asyncio.create_task(fixes.run(self._load_events()), name="fixes")
            await self._caregivers_live(opts.caregivers)
            await self._drive(fixes, devices, phones, console, clients, pg)
            fixes.stop()
            await stream
            await devices.settle(30)
            drained = await self._drain(tap, fixes, devices, phones, pg)
            await tap.stop()
            figures = await self._count(tap, fixes, devices, phones, console, pg, drained)
        finally:
            await pg.close()
            await tap.stop()
            for c in clients:
                await c.stop()
        return figures

    async def _caregivers_live(self, caregivers: int) -> None:
        """Wait until the falls' caregivers are in the live index (the first falls would
        find nobody)."""
        r = aioredis.Redis.from_url(self.direct.redis_url)
        keys = [self.direct.keys.caregiver(fall_caregiver(k)) for k in range(caregivers)]

        async def live() -> bool:
            async with r.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hget(key, "ts")
                return all(await pipe.execute())

        try:
            await _until(live, 30, "the caregivers in the live index")
        finally:
            await r.aclose()

    def _load_events(self) -> int:
        return max(0, self.opts.events - self.opts.falls)

    async def _drive(
        self,
        fixes: FixStream,
        devices: FallDevices,
        phones: list[CaregiverPhone],
        console: DispatcherConsole,
        clients: list[Client],
        pg: Record,
    ) -> None:
        """The falls at their pace, the fault at its time; after the stream, a trickle until
        the system is whole again (or ``recover_within_s`` passed)."""
        opts, t = self.opts, self.t
        t.started = time.time()
        fault = asyncio.create_task(self._fault(t.started + opts.stream_s * opts.fault_at))
        every = opts.stream_s / max(1, opts.falls)
        n = 0
        while n < opts.falls:
            due = t.started + n * every
            await asyncio.sleep(max(0.0, due - time.time()))  # the falls' pace
            devices.fall(n)
            n += 1
            await self._check_recovered(devices, phones, console, clients, pg)
        await asyncio.sleep(max(0.0, t.started + opts.stream_s - time.time()))
        t.stream_end = time.time()
        fixes.slow_to(TAIL_FIX_RATE)
        deadline = time.time() + opts.recover_within_s
        last_fall = time.time()
        while time.time() < deadline:
            if fault.done() and await self._check_recovered(devices, phones, console, clients, pg):
                break
            if time.time() - last_fall >= TAIL_FALL_S:
                devices.fall(n)
                n, last_fall = n + 1, time.time()
            await asyncio.sleep(POLL_S)  # polling the record
        if not fault.done():
            t.notes.append("the fault had not ended when the run stopped")
        await fault

    async def _fault(self, at: float) -> None:
        sc, t = self.scenario, self.t
        await asyncio.sleep(max(0.0, at - time.time()))  # the fault's time in the stream
        t.fault_at = time.time()
        if sc.fault == "server":
            server: Server = sc.target  # type: ignore[assignment]
            await asyncio.to_thread(self.servers.kill, server)
            await asyncio.sleep(self.opts.down_s)  # the outage's length
            await asyncio.to_thread(self.servers.start, server)
        elif sc.fault == "service":
            await self._kill_service(sc.target)
        elif sc.fault == "proxy":
            assert self.proxy is not None
            await asyncio.to_thread(self.proxy.set_mode, sc.mode)
            await asyncio.sleep(self.opts.proxy_s)  # the outage's length
            await asyncio.to_thread(self.proxy.set_mode, "pass")
        t.fault_end = time.time()
        log.info("%s: fault from %.1f s to %.1f s", sc.name, t.fault_at - t.started,
                 t.fault_end - t.started)  # fmt: skip

    def _services(self) -> dict[str, Any]:
        state = json.loads((self.workdir / "state.json").read_text())
        services: dict[str, Any] = state["services"]
        return services

    async def _kill_service(self, name: str) -> None:
        pid = self._services()[name]["pid"]
        os.killpg(pid, signal.SIGKILL)
        log.info("killed %s (pid %d) with SIGKILL", name, pid)

        async def restarted() -> bool | None:
            now = self._services()[name]["pid"]
            return True if now is not None and now != pid else None

        await _until(restarted, 120, f"{name} started again")

    async def _check_recovered(
        self,
        devices: FallDevices,
        phones: list[CaregiverPhone],
        console: DispatcherConsole,
        clients: list[Client],
        pg: Record,
    ) -> bool:
        t = self.t
        if t.recovered_at is not None:
            return True
        if t.fault_end is None or not all(c.connected for c in clients):
            return False
        try:
            fix = await pg.fetch(
                "SELECT 1 FROM fixes WHERE received_at > to_timestamp($1) LIMIT 1", t.fault_end
            )
            after = [f.device for f in devices.falls.values() if f.first_sent > t.fault_end]
            rows = await pg.fetch(
                "SELECT id::text FROM incidents WHERE device_id = ANY($1::text[])", after
            )
        except DOWN:
            return False
        incidents = {r[0] for r in rows}
        offered = {
            s.frame["incident"]["incident_id"] for p in phones for s in p.frames("offer")
        } | {
            s.frame["incident_id"]
            for s in console.frames("incident")
            if s.frame.get("state") == "escalated"
        }
        if fix and incidents & offered:
            t.recovered_at = time.time()
            return True
        return False

    async def _drain(
        self,
        tap: KafkaTap,
        fixes: FixStream,
        devices: FallDevices,
        phones: list[CaregiverPhone],
        pg: Record,
    ) -> bool:
        """Wait until the record holds what Kafka took (or ``drain_within_s`` passed)."""

        seen = {"taken": -1, "since": time.monotonic()}

        async def complete() -> bool | None:
            taken = len(tap.fixes) + len(tap.events)
            if taken != seen["taken"]:  # Kafka still takes what was sent last
                seen.update(taken=taken, since=time.monotonic())
                return None
            if time.monotonic() - seen["since"] < QUIET_S:
                return None
            try:
                in_pg = await _pg_fixes(pg)
                done = await _handled(pg)
            except DOWN:
                return None
            accepted = set(tap.fixes) & set(fixes.written)
            falls = {d for d in tap.events if d in devices.falls}
            return True if accepted <= in_pg and falls <= done else None

        try:
            return bool(await _until(complete, self.opts.drain_within_s, "the record to catch up"))
        except TimeoutError:
            return False

    async def _count(
        self,
        tap: KafkaTap,
        fixes: FixStream,
        devices: FallDevices,
        phones: list[CaregiverPhone],
        console: DispatcherConsole,
        pg: Record,
        drained: bool,
    ) -> dict[str, Any]:
        t, sc = self.t, self.scenario
        in_pg = await _pg_fixes(pg)
        written = set(fixes.written)
        on_kafka = set(tap.fixes) & written
        # Accepted: seen on Kafka, or in the record (which only Kafka feeds: a broker that
        # lost its records may have lost them before the tap read them).
        accepted_fixes = on_kafka | (in_pg & written)
        lost_fixes = on_kafka - in_pg
        falls = set(devices.falls)
        incidents = await pg.fetch(
            "SELECT device_id, id::text, state FROM incidents WHERE agency_id = $1", AGENCY
        )
        by_device = Counter(r["device_id"] for r in incidents)
        final = {r["device_id"] for r in incidents if r["state"] in HANDLED}
        accepted_falls = {d for d in tap.events if d in falls} | (set(by_device) & falls)
        acked = {d for d, f in devices.falls.items() if f.acked_at}
        lost_falls = {d for d in accepted_falls if d not in by_device}
        # A fall the broker acknowledged to its device (so the device will not send it again)
        # that never reached Kafka is lost too, though ingest never had it.
        acked_lost = acked - accepted_falls
        unhandled = {d for d in accepted_falls if d in by_device and d not in final}
        doubles = _duplicates(phones, console)
        stale = await self._stale_live(tap, written)
        restarts = {
            name: svc["restarts"] for name, svc in self._services().items() if svc["restarts"]
        }
        recovered = (
            round(t.recovered_at - t.fault_end, 2) if t.recovered_at and t.fault_end else None
        )
        dup_incidents = sum(n - 1 for n in by_device.values() if n > 1)
        produced = await self._ingest_counts()
        # Ingest's own count of fixes it produced (Kafka acknowledged them) outranks the tap
        # where Kafka lost records the tap never read; valid while ingest ran throughout.
        counted = produced.get("fixes")
        unrecorded = (
            max(0, round(counted) - len(in_pg & written))
            if counted is not None and "ingest" not in restarts
            else 0
        )
        return {
            "name": sc.name,
            "fault": sc.what,
            "published": len(written) + len(falls),
            "accepted": len(accepted_fixes) + len(accepted_falls),
            "lost": max(len(lost_fixes), unrecorded) + len(lost_falls) + len(acked_lost),
            "duplicated": dup_incidents + doubles["offers"] + doubles["assigned"],
            "recovered_s": recovered,
            "fixes": {
                "published": len(written),
                "not_sent": fixes.unsent,
                "accepted": len(accepted_fixes),
                "seen_on_kafka": len(on_kafka),
                "not_accepted": len(written - accepted_fixes),
                "in_postgres": len(in_pg & written),
                "lost": len(lost_fixes),
                "produced_by_ingest_not_recorded": unrecorded,
                "stale_live_positions": stale,
            },
            "falls": {
                "published": len(falls),
                "acknowledged": len(acked),
                "accepted": len(accepted_falls),
                "incidents": len(incidents),
                "lost": len(lost_falls),
                "acknowledged_never_accepted": sorted(acked_lost),
                "assigned_or_escalated": len(final & accepted_falls),
                "unhandled": sorted(unhandled),
                "duplicate_incidents": dup_incidents,
            },
            "ingest_produced": produced,
            "websocket": {
                "offers": sum(len(p.frames("offer")) for p in phones),
                "duplicate_offers": doubles["offers"],
                "duplicate_assigned": doubles["assigned"],
                "redelivered_after_resync": doubles["redelivered"],
                "duplicates": doubles["detail"],
                "reconnects": sum(c.connections - 1 for c in (*phones, console)),
                "resyncs": sum(c.resyncs for c in (*phones, console)),
                "all_connected_at_end": all(c.connected for c in (*phones, console)),
            },
            "restarts": restarts,
            "drained": drained,
            "timeline_s": {
                "fault_at": _since(t.started, t.fault_at),
                "fault_end": _since(t.started, t.fault_end),
                "stream_end": _since(t.started, t.stream_end),
                "recovered_at": _since(t.started, t.recovered_at),
            },
            "notes": t.notes,
        }

    async def _ingest_counts(self) -> dict[str, float | None]:
        """What the ingest processes say they produced (since their last start)."""
        s = self.direct
        out: dict[str, float | None] = {}
        for name, port, metric in (
            ("fixes", s.ingest_metrics_port, "careknot_ingest_fixes_accepted_total"),
            ("device_events", s.emergency_ingest_metrics_port,
             "careknot_ingest_device_events_accepted_total"),
        ):  # fmt: skip
            out[name] = await _scrape_sum(port, metric)
        return out

    async def _stale_live(self, tap: KafkaTap, written: set[FixKey]) -> int:
        """Caregivers whose live position in Redis is not the last fix of theirs Kafka took."""
        last: dict[str, int] = {}
        for cg, ts in set(tap.fixes) & written:
            last[cg] = max(ts, last.get(cg, 0))
        r = aioredis.Redis.from_url(self.direct.redis_url)
        try:
            names = sorted(last)
            async with r.pipeline(transaction=False) as pipe:
                for cg in names:
                    pipe.hget(self.direct.keys.caregiver(cg), "ts")
                values = await pipe.execute()
        finally:
            await r.aclose()
        return sum(
            1
            for cg, v in zip(names, values, strict=True)
            if v is None or round(float(v)) < last[cg]
        )


HANDLED = ("assigned", "resolved", "escalated")
DOWN = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Record:
    """The runner's reads of Postgres, on a connection made again after Postgres was lost
    (a read while it is away raises one of :data:`DOWN`)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn: asyncpg.Connection | None = None

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        if self._conn is None or self._conn.is_closed():
            s = self._settings
            self._conn = await asyncpg.connect(
                s.postgres_dsn, timeout=5, server_settings={"search_path": s.namespace}
            )
        try:
            rows: list[asyncpg.Record] = await self._conn.fetch(query, *args, timeout=10)
        except DOWN:
            await self.close()
            raise
        return rows

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None


async def _pg_fixes(pg: Record) -> set[FixKey]:
    rows = await pg.fetch(
        "SELECT caregiver_id, round(extract(epoch FROM ts))::bigint FROM fixes"
        " WHERE agency_id = ANY($1::text[])",
        [load.AGENCY, AGENCY],
    )
    return {(r[0], int(r[1])) for r in rows}


async def _handled(pg: Record) -> set[str]:
    rows = await pg.fetch(
        "SELECT device_id FROM incidents WHERE agency_id = $1 AND state = ANY($2::text[])",
        AGENCY,
        list(HANDLED),
    )
    return {r[0] for r in rows}


def _duplicates(phones: list[CaregiverPhone], console: DispatcherConsole) -> dict[str, Any]:
    """Offers and ``assigned`` told more than once within one stream of a client, and those
    sent again after a ``resync`` (the client was told its stream started again)."""
    offers = assigned = redelivered = 0
    detail: list[str] = []
    for phone in phones:
        seen: dict[str, set[int]] = {}
        for s in phone.frames("offer"):
            seen.setdefault(s.frame["offer_id"], set())
            epochs = seen[s.frame["offer_id"]]
            if s.epoch in epochs:
                offers += 1
                detail.append(f"offer {s.frame['offer_id']} twice to {phone.caregiver}")
            elif epochs:
                redelivered += 1
            epochs.add(s.epoch)
        per_incident = Counter(
            s.frame["incident"]["incident_id"] for s in phone.frames("offer")
        )  # a caregiver is offered an incident once
        offers += sum(
            len({s.frame["offer_id"] for s in phone.frames("offer")
                 if s.frame["incident"]["incident_id"] == i}) - 1
            for i, n in per_incident.items() if n > 1
        )  # fmt: skip
        told = Counter(
            (s.frame["offer_id"], s.epoch)
            for s in phone.frames("offer_result")
            if s.frame.get("outcome") == "assigned"
        )
        assigned += sum(n - 1 for n in told.values())
        detail += [
            f"assigned {o} told {n}x to {phone.caregiver}" for (o, _), n in told.items() if n > 1
        ]
    told_desk = Counter(
        (s.frame["incident_id"], s.epoch)
        for s in console.frames("incident")
        if s.frame.get("state") == "assigned"
    )
    assigned += sum(n - 1 for n in told_desk.values())
    detail += [
        f"incident {i} assigned told {n}x to the dispatcher"
        for (i, _), n in told_desk.items()
        if n > 1
    ]
    return {"offers": offers, "assigned": assigned, "redelivered": redelivered, "detail": detail}


async def _scrape_sum(port: int, metric: str) -> float | None:
    """The sum of ``metric``'s samples on a Prometheus ``/metrics`` port (None: no answer)."""
    try:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.0\r\nHost: faults\r\n\r\n")
            await writer.drain()
            text = (await reader.read()).decode()
            writer.close()
    except (OSError, TimeoutError):
        return None
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(metric) and not line.startswith("#")
    ]
    return sum(values) if values else None


def _since(start: float, at: float | None) -> float | None:
    return round(at - start, 2) if at is not None else None


async def _until(probe: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(POLL_S)  # polling an observable condition


async def run_scenarios(
    base: Settings, names: list[str], opts: Options, workdir: Path
) -> list[dict[str, Any]]:
    """Each scenario in turn, on one set of servers (each scenario in a namespace of its
    own, with its own ``careknot up``)."""
    results = []
    with FaultServers() as servers:
        for name in names:
            log.info("scenario %s", name)
            run = Run(SCENARIOS[name], opts, servers, base, workdir / name)
            results.append(await run.run())
            log.info("%s: %s", name, {k: results[-1][k] for k in SUMMARY})
    return results


SUMMARY = ("published", "accepted", "lost", "duplicated", "recovered_s")
