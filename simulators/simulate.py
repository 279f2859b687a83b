"""``careknot simulate``: the simulated city against the running system.

:func:`run` seeds the registry in Postgres, publishes the city's fixes and falls over MQTT, its
residents' ambient sensors' events (their recent history seeded in Postgres first), and
(optionally) lets every caregiver answer offers over the gateway's WebSocket. The city itself is
``simulators.city``'s (pure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Callable
from datetime import date, timedelta
from types import TracebackType
from typing import Literal

import aiomqtt
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from adapters.mqtt.dynsec import Kind
from kernel import tokens
from kernel.backoff import Backoff
from kernel.errors import CareKnotError
from kernel.settings import Settings
from simulators import resident_feed, scheduling, visit_plan
from simulators.city import City, Fall, SimFix
from simulators.devices import OWN_CONNECTIONS, DeviceLives, SharedDevices, live
from simulators.dispensers import Dispensers, dispenser_id
from simulators.geo import Point
from simulators.households import Household
from simulators.links import Links, Publishing, provision
from simulators.population import AGENCY_ID, AGENCY_NAME, CityConfig
from simulators.vitals import VitalsMonitors, monitor_id, wearers

log = logging.getLogger(__name__)

TICK_S = 0.2
DOSES_EVERY_S = 1.0
NEXT_DAY_LEAD_S = 15 * 60.0
"""The next day's visits are rostered this long before its midnight."""
ROSTER_RETRY_S = 60.0

Answer = Literal["accept", "decline"]


def plan_answer(
    rng: random.Random, config: CityConfig
) -> tuple[float, Literal["accept", "decline"]]:
    """How long a simulated caregiver takes to answer an offer, and what she answers."""
    delay = rng.uniform(*config.answer_delay_s)
    return delay, "accept" if rng.random() < config.accept_probability else "decline"


def location_topic(caregiver_id: str) -> str:
    return f"ck/{AGENCY_ID}/cg/{caregiver_id}/loc"


def event_topic(device_id: str) -> str:
    return f"ck/{AGENCY_ID}/dev/{device_id}/evt"


def location_payload(fix: SimFix) -> bytes:
    """The fix as OwnTracks location JSON."""
    body: dict[str, object] = {
        "_type": "location",
        "lat": round(fix.lat, 7),
        "lon": round(fix.lon, 7),
        "tst": fix.tst,
        "acc": fix.acc,
        "vel": fix.vel,
        "batt": fix.batt,
    }
    if fix.cog is not None:
        body["cog"] = round(fix.cog)
    return orjson.dumps(body)


def fall_payload(fall: Fall, ts: float, sent_at: float) -> bytes:
    return orjson.dumps({"type": "fall", "ts": ts, "seq": fall.seq, "data": {"sent_at": sent_at}})


async def seed_registry(
    settings: Settings,
    city: City,
    dispensers: Dispensers | None = None,
    monitors: VitalsMonitors | None = None,
) -> None:
    """Write the agency, its caregivers, patients, fall detectors and (with ``dispensers``)
    medication dispensers and schedules to Postgres (idempotent). The homes' ambient sensors are
    registered with their history (``simulators.resident_feed.seed_history``)."""
    from adapters.storage.medication import MedicationStore
    from adapters.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow

    async with Database(settings) as db:
        await db.migrate()
        await db.upsert_agency(AGENCY_ID, AGENCY_NAME)
        await db.upsert_caregivers(
            [CaregiverRow(c.id, AGENCY_ID, c.name, c.skills) for c in city.caregivers]
        )
        await db.upsert_patients(
            [PatientRow(h.patient_id, AGENCY_ID, h.name, h.at.lat, h.at.lon) for h in city.homes]
        )
        await db.upsert_devices(
            [DeviceRow(h.device_id, AGENCY_ID, h.patient_id, "fall_detector") for h in city.homes]
        )
        if monitors is not None:
            worn = [
                DeviceRow(monitor_id(p), AGENCY_ID, p, "vitals_monitor")
                for p in monitors.patient_ids
            ]
            await db.upsert_devices(worn)
        if dispensers is None:
            return
        await db.upsert_devices(
            [DeviceRow(dispenser_id(p), AGENCY_ID, p, "dispenser") for p in dispensers.schedules]
        )
        store, now = MedicationStore(db), time.time()
        for schedule in dispensers.schedules.values():
            await store.set_schedule(schedule, now)


async def _publish(
    settings: Settings,
    city: City,
    dispensers: Dispensers | None,
    monitors: VitalsMonitors | None = None,
    links: Links | None = None,
) -> None:
    """Publish fixes, falls and doses taken for ever, reconnecting to the broker when it goes
    away; each phone and device on its own connection where ``links`` has its credentials."""
    links = links or Links(settings)
    backoff = Backoff()
    while True:
        try:
            async with links.connected() as mq:
                log.info("publishing to mqtt://%s:%d", settings.mqtt_host, settings.mqtt_port)
                backoff.reset()
                await _tick(mq, city, dispensers, monitors)
        except aiomqtt.MqttError as exc:
            delay = backoff.next()
            log.warning("MQTT: %s; retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)


async def _tick(
    mq: Publishing,
    city: City,
    dispensers: Dispensers | None,
    monitors: VitalsMonitors | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time()
    doses_to = time.time()
    while True:
        now = time.time()
        if dispensers is not None and now - doses_to >= DOSES_EVERY_S:
            await _doses_taken(mq, dispensers, doses_to, now)
            doses_to = now
        for fix in city.step(now):
            await mq.publish(location_topic(fix.caregiver_id), location_payload(fix), qos=0)
        for reading in monitors.step(now) if monitors is not None else ():
            topic = f"ck/{AGENCY_ID}/dev/{reading.device_id}/tel"
            await mq.publish(topic, orjson.dumps(reading.body), qos=1)
        for fall in city.maybe_falls(now):
            log.info("fall at %s (seq %d)", fall.device_id, fall.seq)
            payload = fall_payload(fall, now, time.time())
            await mq.publish(event_topic(fall.device_id), payload, qos=1)
        deadline = max(deadline + TICK_S, loop.time())
        await asyncio.sleep(deadline - loop.time())


async def _doses_taken(mq: Publishing, dispensers: Dispensers, start: float, end: float) -> None:
    """Each dispenser says what happened in [``start``, ``end``): the doses taken (a dose not
    taken, nothing), its jams, second attempts and refills."""
    for said in dispensers.said_between(start, end):
        device = dispenser_id(said.patient_id)
        seq = int(said.at * 1000)
        body = {"type": said.kind, "ts": said.at, "seq": seq, "data": said.data}
        await mq.publish(event_topic(device), orjson.dumps(body), qos=1)


Assigned = Callable[[str, Point, float], None]
"""Told a caregiver was assigned an incident: her id, where it is, when."""


class OfferAnswerer:
    """One simulated caregiver's phone: answers the offers the gateway sends her; told she is
    assigned one, ``assigned`` sends her there."""

    def __init__(
        self,
        settings: Settings,
        config: CityConfig,
        caregiver_id: str,
        assigned: Assigned | None = None,
    ) -> None:
        self._settings, self._config, self.caregiver_id = settings, config, caregiver_id
        self._rng = random.Random(f"{config.seed}:answers:{caregiver_id}")
        self._last_seq = 0
        self._answers: set[asyncio.Task[None]] = set()
        self._assigned = assigned
        self._offered: dict[str, Point] = {}

    def _url(self) -> str:
        return f"ws://{self._settings.gateway_host}:{self._settings.gateway_port}/ws"

    def _auth(self) -> str:
        """The first frame: her token, fresh at each connection."""
        ring, now = tokens.keyring_of(self._settings), time.time()
        token = tokens.mint(
            ring, "caregiver", self.caregiver_id, AGENCY_ID, self._settings.token_ttl_s, now
        )
        return orjson.dumps({"type": "auth", "token": token}).decode()

    async def run(self) -> None:
        backoff = Backoff(first=1.0, rng=self._rng)
        while True:
            try:
                async with connect(self._url(), proxy=None, open_timeout=10) as ws:
                    backoff.reset()
                    await self._session(ws)
            except (OSError, TimeoutError, WebSocketException) as exc:
                log.debug("%s: gateway: %r", self.caregiver_id, exc)
            finally:
                for task in self._answers:
                    task.cancel()
            await asyncio.sleep(backoff.next())

    async def _session(self, ws: ClientConnection) -> None:
        await ws.send(self._auth())
        if self._last_seq:
            await ws.send(orjson.dumps({"type": "resume", "last_seq": self._last_seq}).decode())
        async for raw in ws:
            try:
                frame = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(frame, dict):
                continue
            if isinstance(frame.get("seq"), int):
                self._last_seq = max(self._last_seq, frame["seq"])
            if frame.get("type") == "offer" and isinstance(frame.get("offer_id"), str):
                self._remember(frame)
                task = asyncio.create_task(self._answer(ws, frame["offer_id"]))
                self._answers.add(task)
                task.add_done_callback(self._answers.discard)
            elif frame.get("type") == "offer_result":
                where = self._offered.pop(str(frame.get("offer_id")), None)
                if where is not None and frame.get("outcome") == "assigned" and self._assigned:
                    self._assigned(self.caregiver_id, where, time.time())

    def _remember(self, frame: dict[str, object]) -> None:
        """Where an offer's incident is, until its result."""
        incident = frame.get("incident")
        if isinstance(incident, dict):
            lat, lon = incident.get("lat"), incident.get("lon")
            if isinstance(lat, int | float) and isinstance(lon, int | float):
                if len(self._offered) > 100:
                    self._offered.pop(next(iter(self._offered)))
                self._offered[str(frame["offer_id"])] = Point(float(lat), float(lon))

    async def _answer(self, ws: ClientConnection, offer_id: str) -> None:
        delay, answer = plan_answer(self._rng, self._config)
        await asyncio.sleep(delay)
        reply: dict[str, str] = {"type": answer, "offer_id": offer_id}
        if answer == "decline":
            reply["reason"] = "busy"
        with contextlib.suppress(WebSocketException):
            await ws.send(orjson.dumps(reply).decode())
        log.info("%s: %s offer %s", self.caregiver_id, answer, offer_id)


class Simulation:
    """The simulated city: ``async with Simulation(settings, config) as sim: await sim.run()``.

    Entering puts the city's agency, caregivers, homes and devices in the registry (raises
    :class:`CareKnotError` when it cannot); :meth:`run` publishes the phones' fixes and the
    homes' falls, seeds the residents' history and publishes their sensors' events
    (``simulators.resident_feed``) and, if configured, answers the offers each caregiver gets,
    until SIGINT or SIGTERM; 1 if a task failed.
    """

    def __init__(self, settings: Settings, config: CityConfig) -> None:
        self._settings, self._config = settings, config
        self.links: Links  # on entering, once the city is registered
        self.city = City(config, time.time())
        homes = [h.patient_id for h in self.city.homes]
        self.dispensers = Dispensers(homes, config.seed) if config.dispensers else None
        detectors = [h.device_id for h in self.city.homes]
        self.devices = DeviceLives(detectors, config.seed, time.time())
        worn = wearers(homes, config.vitals_monitors, config.seed)
        rate = config.vitals_episodes_per_hour
        self.monitors = VitalsMonitors(worn, config.seed, time.time(), rate) if worn else None
        self.households = (
            [
                Household(i, h.patient_id, config.seed, anomaly_rate=config.resident_anomaly_rate)
                for i, h in enumerate(self.city.homes, start=1)
            ]
            if config.residents
            else []
        )
        self._first_day, self._last_day = visit_plan.first_days(self.city.start)
        self.visits = self._days(self._first_day, self._last_day) if config.visits else []
        self.city.follow(self.visits, self.city.start)

    async def __aenter__(self) -> Simulation:
        await seed_registry(self._settings, self.city, self.dispensers, self.monitors)
        self.links = Links(self._settings)
        self.links.add(await provision(self._settings, AGENCY_ID, self._publishers()))
        log.info("city of %d caregivers, %d homes", len(self.city.caregivers), len(self.city.homes))
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def run(self) -> int:
        s, config = self._settings, self._config
        publishing = _publish(s, self.city, self.dispensers, self.monitors, self.links)
        tasks = [asyncio.create_task(publishing, name="sim-publish")]
        tasks += self._device_tasks()
        if self.households:
            residents = resident_feed.live(
                s,
                self.households,
                AGENCY_ID,
                self.city.start,
                seed=config.seed,
                fall_after_min=config.resident_fall_after_min,
                links=self.links,
            )
            tasks.append(asyncio.create_task(residents, name="sim-residents"))
        if config.visits:
            tasks.append(asyncio.create_task(self._roster(), name="sim-roster"))
        if config.answer_offers:
            divert = self.city.divert
            tasks += [
                asyncio.create_task(
                    OfferAnswerer(s, config, c.id, divert).run(), name=f"sim-{c.id}"
                )
                for c in self.city.caregivers
            ]
        return await _until_stopped(tasks)

    def _days(self, first: date, last: date) -> list[visit_plan.PlannedVisit]:
        """The visits of the days from ``first`` to ``last`` from now (some already due)."""
        city, out, day = self.city, [], first
        while day <= last:
            out += visit_plan.plan_day(self._config, city.homes, city.caregivers, day)
            day += timedelta(days=1)
        return visit_plan.due_from(out, time.time())

    async def _roster(self) -> None:
        """Schedule the first days' visits through the API, then each next day's before its
        midnight (the caregivers following them from then); never returns."""
        fences = visit_plan.fences_needed(self.city.homes)
        first, day, visits = self._first_day, self._last_day, self.visits
        while True:
            try:
                counts = await scheduling.schedule(self._settings, AGENCY_ID, visits, fences)
            except (scheduling.SchedulingFailed, ImportError) as exc:
                log.error("the day's visits are not scheduled: %s", exc)
                await asyncio.sleep(ROSTER_RETRY_S)
                visits = self._days(first, day)
                continue
            log.info("visits of %s to %s scheduled through the API: %s", first, day, counts)
            fences = {}
            _start, midnight = visit_plan.day_bounds(day)
            await asyncio.sleep(max(0.0, midnight - NEXT_DAY_LEAD_S - time.time()))
            first = day = day + timedelta(days=1)
            visits = self._days(first, day)
            self.city.follow(visits, time.time())

    def _device_tasks(self) -> list[asyncio.Task[None]]:
        """The fall detectors' heartbeats, births and last wills: a few on connections of
        their own (``simulators.devices``), the rest on one shared connection."""
        s, detectors = self._settings, [h.device_id for h in self.city.homes]
        own, shared = detectors[:OWN_CONNECTIONS], detectors[OWN_CONNECTIONS:]
        links = self.links
        tasks = [
            asyncio.create_task(
                live(links.access, AGENCY_ID, d, self.devices, links.credentials(d)),
                name=f"sim-{d}",
            )
            for d in own
        ]
        beating = _beat(s, SharedDevices(self.devices, shared, AGENCY_ID), links)
        return [*tasks, asyncio.create_task(beating, name="sim-devices")]

    def _publishers(self) -> list[tuple[Kind, str]]:
        """The city's phones and its devices but the residents' sensors (given theirs as
        their history is seeded): each its own credentials where the broker is ours."""
        out: list[tuple[Kind, str]] = [("cg", c.id) for c in self.city.caregivers]
        out += [("dev", h.device_id) for h in self.city.homes]
        if self.monitors is not None:
            out += [("dev", monitor_id(p)) for p in self.monitors.patient_ids]
        if self.dispensers is not None:
            out += [("dev", dispenser_id(p)) for p in self.dispensers.schedules]
        return out


async def _beat(settings: Settings, devices: SharedDevices, links: Links | None = None) -> None:
    """Publish the shared devices' status every second, reconnecting when the broker goes
    (each device on its own connection where ``links`` has its credentials)."""
    links = links or Links(settings)
    backoff = Backoff()
    while True:
        try:
            async with links.connected() as mq:
                backoff.reset()
                while True:
                    for topic, payload, retained in devices.due(time.time()):
                        await mq.publish(topic, payload, qos=1 if retained else 0, retain=retained)
                    await asyncio.sleep(1.0)
        except aiomqtt.MqttError as exc:
            await asyncio.sleep(backoff.next())
            log.warning("MQTT (devices): %s", exc)


async def run(settings: Settings, config: CityConfig) -> int:
    """``careknot simulate``: run the city until SIGINT/SIGTERM or cancellation."""
    try:
        async with Simulation(settings, config) as simulation:
            return await simulation.run()
    except CareKnotError as exc:  # entering: the registry could not be seeded
        log.error("cannot seed the registry: %s", exc)
        return 1


async def _until_stopped(tasks: list[asyncio.Task[None]]) -> int:
    """Wait for SIGINT/SIGTERM (or a task failing), then cancel every task."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stopper, *tasks):
            task.cancel()
        await asyncio.gather(stopper, *tasks, return_exceptions=True)
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
    failed = [t for t in done if t is not stopper and not t.cancelled() and t.exception()]
    for task in failed:
        log.error("%s failed", task.get_name(), exc_info=task.exception())
    return 1 if failed else 0
