"""``careknot bench devices``: the homes' devices at scale through the whole system.

``careknot up`` runs on servers of its own (``careknot.running.isolated``) while, for
``--seconds``:

- the homes' vitals monitors and motion sensors publish ``--telemetry`` readings and
  ``--events`` events a second at QoS 1 (:mod:`simulators.device_load`, ``--homes`` homes,
  two publisher processes), and caregivers' phones ``--fixes`` fixes a second
  (:mod:`simulators.load`);
- ``--alarms`` dispensers a second report tampering (``dispenser_tamper``, each from a
  dispenser of its own), and the agency's dispatcher console times each from its MQTT publish
  to its ``alarm`` frame on the WebSocket (and in three parts: to ingest receiving it, its
  ``received_at`` in the home's event history; from there to the dispatch worker raising it, the
  alarm's ``raised_at``; and from there to the frame);
- ``--doses`` patients' doses close their windows untaken, spread over the run with nobody
  saying a word, and the console times each ``missed`` dose frame from the moment its window
  closed.

Afterwards the bench waits for Postgres to hold what the broker acknowledged (a minute at
most) and reports what it never got as ``lost``: readings against the vitals' raw samples,
events against each home's event history. Postgres' counts are read every second meanwhile,
for the rates the system kept up and the PNG of published against kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from adapters.mqtt.access import access_of, credentials
from adapters.storage.device_history import DeviceHistory
from adapters.storage.medication import MedicationStore
from adapters.storage.namespace import drop_namespace
from adapters.storage.postgres import Database, DeviceRow
from adapters.storage.vitals import VitalsStore
from careknot.bench import command, cpu, own_options
from careknot.bench.report import latency_figures, machine, write
from careknot.running import RunningSystem, isolated, worker_ready
from kernel.settings import Settings
from medication.doses import Schedule, ScheduledDose
from simulators import device_load
from simulators import load as fix_load
from simulators.phone import Frame, Phone, token

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 90.0
DRAIN_S = 60.0
WARM_S = 3.0
DOSE_WINDOW_S = 60.0
SCHEDULES_READ_S = 2.0
ZONE = "UTC"
ROLES = ("dispatch", "fixes", "devices")


@dataclass(frozen=True)
class Plan:
    homes: int
    seconds: float
    telemetry: int
    events: int
    fixes: int
    alarms: float
    doses: int


@dataclass
class Console:
    """What the dispatcher's console saw: when each alarm and each missed dose came."""

    doses: int
    alarms_at: dict[str, float] = field(default_factory=dict)
    raised_at: dict[str, float] = field(default_factory=dict)
    """When the dispatch worker raised each alarm (its clock: the same machine's)."""
    received_at: dict[str, float] = field(default_factory=dict)
    """When ingest received each tamper event (from the home's event history)."""
    missed_at: dict[str, float] = field(default_factory=dict)
    every_dose_told: asyncio.Event = field(default_factory=asyncio.Event)

    def see(self, frame: Frame, at: float) -> None:
        if frame.get("type") == "alarm" and frame.get("kind") == "tamper":
            device = frame["source"].removeprefix("device:")
            self.alarms_at.setdefault(device, at)
            self.raised_at.setdefault(device, frame["raised_at"])
        elif frame.get("type") == "dose" and frame.get("outcome") == "missed":
            self.missed_at.setdefault(frame["patient_id"], at)
            if len(self.missed_at) >= self.doses:
                self.every_dose_told.set()


@dataclass
class Kept:
    """Postgres' counts, read every second: (seconds since the start, readings, events)."""

    series: list[tuple[float, int, int]] = field(default_factory=list)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    opts = own_options("devices", args)
    plan = Plan(
        opts.homes,
        opts.seconds,
        opts.telemetry,
        opts.events,
        opts.fixes,
        opts.alarms,
        opts.doses,
    )
    figures, kept = await measure(settings, plan)
    figures["command"] = command("devices", opts)
    path = write(args.output, "bench-devices.json", figures)
    _plot(figures, kept, Path(args.output) / "bench-devices.png")
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    print(f"written to {path} and bench-devices.png beside it")
    return 0


async def measure(settings: Settings, plan: Plan) -> tuple[dict[str, Any], Kept]:
    workdir = Path(tempfile.mkdtemp(prefix="careknot-bench-"))
    bench = isolated(settings, workdir, medication_schedules_read_s=SCHEDULES_READ_S)
    running = RunningSystem(bench, workdir, simulate=False)
    live = await asyncio.to_thread(running.__enter__)
    try:
        return await _measure(live, plan)
    except BaseException:
        log.error("the system said:\n%s", running.log_tail())
        raise
    finally:
        await asyncio.to_thread(running.__exit__, None, None, None)
        await drop_namespace(live)


async def _measure(s: Settings, plan: Plan) -> tuple[dict[str, Any], Kept]:
    await worker_ready(s, READY_TIMEOUT_S, ROLES)
    dispensers = int(plan.alarms * plan.seconds) + 1
    async with Database(s, max_size=4) as db:
        await _seed(db, plan, dispensers)
        start_at = time.time() + WARM_S + SCHEDULES_READ_S * 2
        closes = await _schedule_doses(db, plan, start_at)
        console = Console(len(closes))
        desk = await Phone.open(s, token(s, "dispatcher", "bench-desk", device_load.AGENCY))
        watching = asyncio.create_task(_watch(desk, console))
        kept = Kept()
        counting = asyncio.create_task(_count(db, plan, start_at, kept))
        pids = cpu.roles([os.getpid()])
        cpu_before = cpu.cpu_by_role(pids)
        try:
            published, fixes, raised = await _publish(s, plan, start_at, dispensers)
            drained = await _drain(kept, published.acknowledged + len(raised))
            used = _cpu_used(cpu_before, cpu.cpu_by_role(pids))
            await _await_doses(console, closes)
            console.received_at = await _received(db, list(raised))
            if watching.done():
                watching.result()  # the console's connection failed: its figures would be short
        finally:
            counting.cancel()
            watching.cancel()
            await desk.close()
    figures = _figures(plan, published, fixes, raised, console, closes, kept, drained)
    return {**figures, "cpu_s_by_role": used}, kept


def _cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each role used over the run, busiest first."""
    used = {role: round(after[role] - before.get(role, 0.0), 1) for role in after}
    return dict(sorted(used.items(), key=lambda item: -item[1]))


async def _seed(db: Database, plan: Plan, dispensers: int) -> None:
    await device_load.seed(db, plan.homes)
    await fix_load.seed(db, fix_load.caregiver_ids(_fix_caregivers(plan)))
    patient = device_load.patient_id
    await db.upsert_devices(
        [
            DeviceRow(f"bdd-{j}", device_load.AGENCY, patient(j % plan.homes), "dispenser")
            for j in range(dispensers)
        ]
    )


def _fix_caregivers(plan: Plan) -> int:
    return max(1, min(5000, plan.fixes))


async def _schedule_doses(db: Database, plan: Plan, start_at: float) -> dict[str, float]:
    """A dose for each of ``plan.doses`` patients, their windows closing one after another
    over the run, to the second; when each closes, by patient."""
    store, since = MedicationStore(db), time.time() - 3600  # in place for an hour
    closes: dict[str, float] = {}
    for n in range(plan.doses):
        closes_at = float(int(start_at + plan.seconds * (n + 0.5) / plan.doses) + 1)
        due = closes_at - DOSE_WINDOW_S
        at = datetime.fromtimestamp(due, ZoneInfo(ZONE)).time()
        patient = device_load.patient_id(n % plan.homes)
        dose = ScheduledDose("bench tablet", at, window_s=DOSE_WINDOW_S)
        await store.set_schedule(Schedule(patient, (dose,), zone=ZONE), since)
        closes[patient] = closes_at
    return closes


async def _watch(desk: Phone, console: Console) -> None:
    while True:
        frame: Frame = orjson.loads(await desk.ws.recv())
        console.see(frame, time.time())


async def _count(db: Database, plan: Plan, start_at: float, kept: Kept) -> None:
    vitals, history = VitalsStore(db), DeviceHistory(db)
    patients = [device_load.patient_id(i) for i in range(plan.homes)]
    while True:
        readings = await vitals.count_samples(patients)
        events = await history.count(device_load.AGENCY)
        kept.series.append((round(time.time() - start_at, 2), readings, events))
        await asyncio.sleep(1.0)  # sampling Postgres' counts, not waiting for anything


async def _publish(
    s: Settings, plan: Plan, start_at: float, dispensers: int
) -> tuple[device_load.Published, int, dict[str, float]]:
    """Run the loads and the tampering dispensers; what the devices published, the fixes
    published, and when each dispenser's tamper was published."""
    homes = list(range(plan.homes))
    total = round((plan.telemetry + plan.events) * plan.seconds)
    events = round(plan.events * plan.seconds)
    shares = [
        device_load.DeviceShare(
            s.mqtt_host,
            s.mqtt_port,
            homes[k::2],
            (total - events) // 2,
            events // 2,
            (plan.telemetry + plan.events) / 2,
            start_at,
            seed=k,
            credentials=credentials(s),
        )
        for k in range(2)
    ]
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(3, mp_context=get_context("spawn")) as pool:
        devices = [loop.run_in_executor(pool, device_load.publish, share) for share in shares]
        fixes = loop.run_in_executor(pool, fix_load.publish, _fix_share(s, plan, start_at))
        raised = await _tamper(s, plan, start_at, dispensers)
        done = await asyncio.gather(*devices)
        fixed = await fixes
    published = device_load.Published(
        sum(d.telemetry for d in done),
        sum(d.events for d in done),
        sum(d.acknowledged for d in done),
        max(d.seconds for d in done),
        "; ".join(d.error for d in done if d.error) or None,
    )
    return published, fixed[0], raised


def _fix_share(s: Settings, plan: Plan, start_at: float) -> fix_load.Share:
    ids = fix_load.caregiver_ids(_fix_caregivers(plan))
    steps = max(1, round(plan.fixes * plan.seconds / len(ids)))
    base_tst = int(time.time()) - fix_load.TST_SPAN_S
    return fix_load.Share(
        s.mqtt_host, s.mqtt_port, ids, steps, plan.fixes, start_at, 0, base_tst, [],
        credentials(s),
    )  # fmt: skip


async def _tamper(s: Settings, plan: Plan, start_at: float, dispensers: int) -> dict[str, float]:
    """A dispenser of its own reports tampering every ``1 / plan.alarms`` s over the run."""
    raised: dict[str, float] = {}
    async with access_of(s).client() as mq:
        for j in range(dispensers):
            await asyncio.sleep(max(0.0, start_at + j / plan.alarms - time.time()))  # pacing
            device = f"bdd-{j}"
            payload = {"type": "dispenser_tamper", "ts": time.time(), "seq": 1, "data": {}}
            raised[device] = time.time()
            await mq.publish(
                f"ck/{device_load.AGENCY}/dev/{device}/evt", orjson.dumps(payload), qos=1
            )
    return raised


async def _drain(kept: Kept, acknowledged: int) -> float:
    """Seconds after the start until Postgres held every reading and event the broker
    acknowledged, or the figure at :data:`DRAIN_S` past the end of the load."""
    deadline = time.time() + DRAIN_S
    while time.time() < deadline:
        if kept.series and kept.series[-1][1] + kept.series[-1][2] >= acknowledged:
            return kept.series[-1][0]
        await asyncio.sleep(0.5)  # the counter samples every second
    return kept.series[-1][0] if kept.series else 0.0


async def _received(db: Database, devices: list[str]) -> dict[str, float]:
    """When ingest received each device's first event, from the homes' event history."""
    rows = await db.pool.fetch(
        "SELECT device_id, min(received_at) AS at FROM device_events"
        " WHERE device_id = ANY($1::text[]) GROUP BY device_id",
        devices,
    )
    return {r["device_id"]: r["at"].timestamp() for r in rows}


async def _await_doses(console: Console, closes: dict[str, float]) -> None:
    """Until the console was told of every missed dose, or 30 s after the last window."""
    left = max(closes.values(), default=0.0) + 30.0 - time.time()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(console.every_dose_told.wait(), max(0.0, left))


def _figures(
    plan: Plan,
    published: device_load.Published,
    fixes: int,
    raised: dict[str, float],
    console: Console,
    closes: dict[str, float],
    kept: Kept,
    drained: float,
) -> dict[str, Any]:
    _at, readings, events = kept.series[-1] if kept.series else (0.0, 0, 0)
    alarm_ms = [
        (console.alarms_at[d] - t) * 1000 for d, t in raised.items() if d in console.alarms_at
    ]
    dose_s = [console.missed_at[p] - c for p, c in closes.items() if p in console.missed_at]
    figures: dict[str, Any] = {
        "benchmark": "devices",
        "homes": plan.homes,
        "seconds": round(published.seconds, 2),
        "offered": {
            "telemetry_per_s": plan.telemetry,
            "device_events_per_s": plan.events,
            "fixes_per_s": plan.fixes,
            "alarms_per_s": plan.alarms,
        },
        "published": {
            "telemetry": published.telemetry,
            "device_events": published.events + len(raised),
            "acknowledged": published.acknowledged,
            "tampers": len(raised),
            "acknowledgements_error": published.error,
            "fixes": fixes,
        },
        "kept": {"telemetry": readings, "device_events": events, "after_s": drained},
        "telemetry_per_s": round(readings / max(drained, published.seconds), 1),
        "device_events_per_s": round(events / max(drained, published.seconds), 1),
        "lost": published.telemetry - readings + published.events + len(raised) - events,
        "alarms": {"raised": len(raised), "told": len(alarm_ms)},
        "doses": {"missed": len(closes), "told": len(dose_s)},
    }
    if alarm_ms:
        lat = latency_figures(alarm_ms, "alarm")
        figures |= {"alarm_p50_ms": lat["alarm_p50_ms"], "alarm_p99_ms": lat["alarm_p99_ms"]}
        told = [d for d in raised if d in console.alarms_at and d in console.received_at]
        got, up = console.received_at, console.raised_at
        figures["alarm_latency"] = {
            **lat,
            **latency_figures([(got[d] - raised[d]) * 1000 for d in told], "publish_to_ingest"),
            **latency_figures([(up[d] - got[d]) * 1000 for d in told], "ingest_to_raised"),
            **latency_figures(
                [(console.alarms_at[d] - up[d]) * 1000 for d in told], "raised_to_frame"
            ),
        }
    if dose_s:
        lat = latency_figures([d * 1000 for d in dose_s], "missed_dose_delay")
        figures["missed_dose_delay_p50_s"] = round(lat["missed_dose_delay_p50_ms"] / 1000, 3)
        figures["missed_dose_delay_p99_s"] = round(lat["missed_dose_delay_p99_ms"] / 1000, 3)
    return {
        **figures,
        "machine": machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _plot(figures: dict[str, Any], kept: Kept, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    seconds = figures["seconds"]
    t = [at for at, _r, _e in kept.series]
    for name, column, rate in (
        ("telemetry", 1, figures["offered"]["telemetry_per_s"]),
        ("device events", 2, figures["offered"]["device_events_per_s"]),
    ):
        ax.plot(t, [row[column] for row in kept.series], label=f"{name} kept")
        ax.plot([0, seconds], [0, rate * seconds], linestyle="--", label=f"{name} published")
    ax.set_xlabel("seconds since the load began")
    ax.set_ylabel("messages")
    ax.set_title(
        f"{figures['homes']} homes: kept in Postgres against published (lost {figures['lost']})"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)
