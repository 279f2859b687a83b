"""The simulated city of Leeds: homes with fall detectors, and caregivers on their rounds.

:class:`City` is the pure core: seeded ``random.Random``, time passed in, no I/O, so the same
seed and the same calls give the same trace. Caregivers travel between homes along straight
lines at urban speeds and dwell at each home; only the dwell is compressed by
``CityConfig.time_scale`` (travel stays at real speed, so every fix is physically plausible and
passes the fix-quality filters). Phones add correlated GPS noise and sometimes lose the fix.

:func:`run` is the I/O shell behind ``careknot simulate``: it seeds the registry in Postgres,
publishes fixes and falls over MQTT, and (optionally) lets every caregiver answer offers over
the gateway's WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import signal
import time
from dataclasses import dataclass
from typing import Literal, NamedTuple

import aiomqtt
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from careknot import tokens
from careknot.errors import CareKnotError
from careknot.settings import Settings
from simulators.geo import Point, bearing_deg, distance_m, lerp, offset, random_point

log = logging.getLogger(__name__)

AGENCY_ID = "leeds"
AGENCY_NAME = "CareKnot Leeds Home Care"
CENTRE = Point(53.7997, -1.5492)
TICK_S = 0.2

Answer = Literal["accept", "decline"]

_FIRST = (  # noqa: SIM905 (names read better as prose)
    "Olivia Amelia Isla Ava Mia Sophie Grace Aisha Priya Zara Chloe Emily Hannah Megan Niamh "
    "Jack Oliver Harry George Noah Mohammed Imran Rajesh Tom Daniel Liam Callum Jamal Kwame Ryan"
).split()
_LAST = (  # noqa: SIM905 (names read better as prose)
    "Smith Jones Taylor Brown Wilson Walker Wood Thompson White Hughes Khan Hussain Patel Ahmed "
    "Begum Shah Clarke Robinson Wright Hall Green Lee Harrison Mitchell Kaur Singh Murphy Kelly"
).split()
_ELDER_FIRST = (  # noqa: SIM905 (names read better as prose)
    "Margaret Doris Joan Dorothy Eileen Edna Mabel Irene Betty Jean Harold Arthur Albert Stanley "
    "Kenneth Ronald Walter Norman Dennis Frank Gwen Sheila Barbara Alan Brian"
).split()
_OPTIONAL_SKILLS = (
    ("moving_and_handling", 0.85),
    ("medication", 0.6),
    ("dementia", 0.4),
    ("end_of_life", 0.2),
)


@dataclass(frozen=True, slots=True)
class CityConfig:
    caregivers: int = 50
    homes: int = 200
    fix_interval_s: float = 3.0
    falls_per_minute: float = 0.5
    seed: int = 7
    time_scale: float = 30.0
    """How much faster than real life caregivers finish a visit (dwell 15–45 min / scale)."""
    answer_offers: bool = True
    answer_delay_s: tuple[float, float] = (2.0, 10.0)
    """Real seconds a simulated caregiver takes to answer an offer (not compressed)."""
    accept_probability: float = 0.7
    outages_per_hour: float = 2.0
    radius_m: float = 8000.0


class Home(NamedTuple):
    patient_id: str
    device_id: str
    name: str
    at: Point


class Caregiver(NamedTuple):
    id: str
    name: str
    skills: tuple[str, ...]


class SimFix(NamedTuple):
    """One location a caregiver's phone reports (the OwnTracks fields)."""

    caregiver_id: str
    lat: float
    lon: float
    tst: int
    acc: float
    vel: float
    batt: int
    cog: float | None


class Fall(NamedTuple):
    device_id: str
    seq: int


@dataclass(slots=True)
class _Round:
    """One caregiver's state: a trip from ``origin`` to ``dest``, then a dwell until ``leave``."""

    rng: random.Random
    origin: Point
    dest: Point
    depart: float
    arrive: float
    leave: float
    speed_kmh: float
    next_fix: float
    outage: tuple[float, float]
    noise: tuple[float, float] = (0.0, 0.0)
    batt0: float = 100.0


def populate(config: CityConfig) -> tuple[list[Home], list[Caregiver]]:
    """The city's homes and caregivers, the same for the same seed."""
    rng = random.Random(f"{config.seed}:population")
    homes = [
        Home(
            f"{AGENCY_ID}-p{i:03d}",
            f"{AGENCY_ID}-fd{i:03d}",
            f"{rng.choice(_ELDER_FIRST)} {rng.choice(_LAST)}",
            random_point(rng, CENTRE, config.radius_m),
        )
        for i in range(1, config.homes + 1)
    ]
    caregivers = []
    for i in range(1, config.caregivers + 1):
        extra = tuple(skill for skill, p in _OPTIONAL_SKILLS if rng.random() < p)
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        caregivers.append(Caregiver(f"{AGENCY_ID}-cg{i:02d}", name, ("first_aid", *extra)))
    return homes, caregivers


def plan_answer(
    rng: random.Random, config: CityConfig
) -> tuple[float, Literal["accept", "decline"]]:
    """How long a simulated caregiver takes to answer an offer, and what she answers."""
    delay = rng.uniform(*config.answer_delay_s)
    return delay, "accept" if rng.random() < config.accept_probability else "decline"


class City:
    """Homes and caregivers moving through time; feed it ``now``, take fixes and falls out."""

    def __init__(self, config: CityConfig, start: float) -> None:
        if config.homes < 2 or config.caregivers < 1 or config.fix_interval_s <= 0:
            raise ValueError("a city needs two homes, one caregiver and a positive fix interval")
        self.config = config
        self.start = start
        self.homes, self.caregivers = populate(config)
        self._rounds = [self._first_round(i, start) for i in range(len(self.caregivers))]
        self._fall_rng = random.Random(f"{config.seed}:falls")
        self._fall_rate_per_s = config.falls_per_minute / 60.0
        self._next_fall = self._after_fall(start)
        # device counters continue across restarts, so a replay key (device, seq) stays unique
        self._seq_origin = int(start)
        self._falls: dict[str, int] = {}

    def _first_round(self, index: int, start: float) -> _Round:
        rng = random.Random(f"{self.config.seed}:caregiver:{index}")
        home = rng.choice(self.homes).at
        interval = self.config.fix_interval_s
        return _Round(
            rng=rng,
            origin=home,
            dest=home,
            depart=start,
            arrive=start,
            leave=start + rng.uniform(0.0, self._dwell_s(rng)),
            speed_kmh=0.0,
            next_fix=start + rng.uniform(0.0, interval),
            outage=self._next_outage(rng, start),
            batt0=rng.uniform(45.0, 100.0),
        )

    def _dwell_s(self, rng: random.Random) -> float:
        return rng.uniform(15 * 60, 45 * 60) / self.config.time_scale

    def _next_outage(self, rng: random.Random, after: float) -> tuple[float, float]:
        if self.config.outages_per_hour <= 0:
            return (math.inf, math.inf)
        begin = after + rng.expovariate(self.config.outages_per_hour / 3600.0)
        return (begin, begin + rng.uniform(30.0, 240.0))

    def _next_trip(self, r: _Round) -> None:
        """Leave the home just visited for the nearest of a few homes picked at random."""
        picks = r.rng.sample(self.homes, k=min(12, len(self.homes)))
        dest = min((h.at for h in picks if h.at != r.dest), key=lambda p: distance_m(r.dest, p))
        r.origin, r.depart, r.speed_kmh = r.dest, r.leave, r.rng.uniform(20.0, 40.0)
        r.dest = dest
        r.arrive = r.depart + distance_m(r.origin, dest) / (r.speed_kmh / 3.6)
        r.leave = r.arrive + self._dwell_s(r.rng)

    def where(self, index: int, t: float) -> tuple[Point, float, float | None]:
        """Caregiver ``index``'s true position, speed (km/h) and course at ``t``.

        Rounds only move forward: ``t`` must not go back before an earlier call's trip.
        """
        r = self._rounds[index]
        while t >= r.leave:
            self._next_trip(r)
        if t >= r.arrive or r.arrive <= r.depart:  # at a home (or not yet left the first)
            return r.dest, 0.0, None
        fraction = (t - r.depart) / (r.arrive - r.depart)
        return lerp(r.origin, r.dest, fraction), r.speed_kmh, bearing_deg(r.origin, r.dest)

    def step(self, now: float) -> list[SimFix]:
        """The fixes of the caregivers whose phones are due to report at ``now``."""
        fixes = []
        interval = self.config.fix_interval_s
        for index, r in enumerate(self._rounds):
            if now < r.next_fix:
                continue
            taken = r.next_fix if now - r.next_fix < interval else now  # no backfill
            r.next_fix = taken + max(1.0, interval * r.rng.uniform(0.9, 1.1))
            fix = self._fix(index, r, int(taken))
            if fix is not None:
                fixes.append(fix)
        return fixes

    def _fix(self, index: int, r: _Round, tst: int) -> SimFix | None:
        while tst >= r.outage[1]:
            r.outage = self._next_outage(r.rng, r.outage[1])
        true, vel, cog = self.where(index, tst)
        if r.outage[0] <= tst:
            return None
        sigma = 4.0 if vel > 0 else 8.0  # indoors the fix is worse
        north, east = (_ar1(r.rng, n, sigma) for n in r.noise)
        r.noise = (north, east)
        seen = offset(true, north, east)
        acc = min(30.0, max(5.0, 2.5 * sigma + r.rng.uniform(-2.0, 6.0)))
        batt = max(5, int(r.batt0 - 4.0 * (tst - self.start) / 3600.0))
        speed = max(0.0, vel + r.rng.gauss(0.0, 1.5)) if vel > 0 else 0.0
        cid = self.caregivers[index].id
        return SimFix(cid, seen.lat, seen.lon, tst, round(acc, 1), round(speed, 1), batt, cog)

    def _after_fall(self, t: float) -> float:
        if self._fall_rate_per_s <= 0:
            return math.inf
        return t + self._fall_rng.expovariate(self._fall_rate_per_s)

    def maybe_falls(self, now: float) -> list[Fall]:
        """The falls that happened up to ``now`` (a Poisson process at ``falls_per_minute``)."""
        falls = []
        while self._next_fall <= now:
            device = self._fall_rng.choice(self.homes).device_id
            count = self._falls[device] = self._falls.get(device, 0) + 1
            falls.append(Fall(device, self._seq_origin + count))
            self._next_fall = self._after_fall(self._next_fall)
        return falls


def _ar1(rng: random.Random, previous: float, sigma: float, a: float = 0.9) -> float:
    """Correlated GPS noise (metres): each fix's error is mostly the last one's."""
    value = a * previous + math.sqrt(1 - a * a) * rng.gauss(0.0, sigma)
    return max(-25.0, min(25.0, value))


class Backoff:
    """Capped exponential backoff with jitter: ``next()`` gives the next delay in seconds."""

    def __init__(self, rng: random.Random, first: float = 0.5, cap: float = 30.0) -> None:
        self._rng, self._first, self._cap = rng, first, cap
        self._ceiling = first

    def next(self) -> float:
        delay = self._rng.uniform(self._ceiling / 2, self._ceiling)
        self._ceiling = min(self._cap, self._ceiling * 2)
        return delay

    def reset(self) -> None:
        self._ceiling = self._first


# ---------------------------------------------------------------- the I/O shell


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


async def seed_registry(settings: Settings, city: City) -> None:
    """Write the agency, its caregivers, patients and fall detectors to Postgres (idempotent)."""
    from careknot.storage.postgres import CaregiverRow, Database, DeviceRow, PatientRow

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


async def _publish(settings: Settings, city: City) -> None:
    """Publish fixes and falls for ever, reconnecting to the broker when it goes away."""
    backoff = Backoff(random.Random())
    while True:
        try:
            async with aiomqtt.Client(hostname=settings.mqtt_host, port=settings.mqtt_port) as mq:
                log.info("publishing to mqtt://%s:%d", settings.mqtt_host, settings.mqtt_port)
                backoff.reset()
                await _tick(mq, city)
        except aiomqtt.MqttError as exc:
            delay = backoff.next()
            log.warning("MQTT: %s; retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)


async def _tick(mq: aiomqtt.Client, city: City) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time()
    while True:
        now = time.time()
        for fix in city.step(now):
            await mq.publish(location_topic(fix.caregiver_id), location_payload(fix), qos=0)
        for fall in city.maybe_falls(now):
            log.info("fall at %s (seq %d)", fall.device_id, fall.seq)
            payload = fall_payload(fall, now, time.time())
            await mq.publish(event_topic(fall.device_id), payload, qos=1)
        deadline = max(deadline + TICK_S, loop.time())
        await asyncio.sleep(deadline - loop.time())


class OfferAnswerer:
    """One simulated caregiver's phone: answers the offers the gateway sends her."""

    def __init__(self, settings: Settings, config: CityConfig, caregiver_id: str) -> None:
        self._settings, self._config, self.caregiver_id = settings, config, caregiver_id
        self._rng = random.Random(f"{config.seed}:answers:{caregiver_id}")
        self._last_seq = 0
        self._answers: set[asyncio.Task[None]] = set()

    def _url(self) -> str:
        claims = tokens.Claims(
            role="caregiver",
            sub=self.caregiver_id,
            agency=AGENCY_ID,
            exp=time.time() + self._settings.token_ttl_s,
        )
        token = tokens.issue(claims, self._settings.token_secret)
        return f"ws://{self._settings.gateway_host}:{self._settings.gateway_port}/ws?token={token}"

    async def run(self) -> None:
        backoff = Backoff(self._rng, first=1.0)
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
                task = asyncio.create_task(self._answer(ws, frame["offer_id"]))
                self._answers.add(task)
                task.add_done_callback(self._answers.discard)

    async def _answer(self, ws: ClientConnection, offer_id: str) -> None:
        delay, answer = plan_answer(self._rng, self._config)
        await asyncio.sleep(delay)
        reply: dict[str, str] = {"type": answer, "offer_id": offer_id}
        if answer == "decline":
            reply["reason"] = "busy"
        with contextlib.suppress(WebSocketException):
            await ws.send(orjson.dumps(reply).decode())
        log.info("%s: %s offer %s", self.caregiver_id, answer, offer_id)


async def run(settings: Settings, config: CityConfig) -> int:
    """``careknot simulate``: run the city until SIGINT/SIGTERM or cancellation."""
    city = City(config, time.time())
    try:
        await seed_registry(settings, city)
    except CareKnotError as exc:
        log.error("cannot seed the registry: %s", exc)
        return 1
    log.info("city of %d caregivers, %d homes", len(city.caregivers), len(city.homes))
    tasks = [asyncio.create_task(_publish(settings, city), name="sim-publish")]
    if config.answer_offers:
        tasks += [
            asyncio.create_task(OfferAnswerer(settings, config, c.id).run(), name=f"sim-{c.id}")
            for c in city.caregivers
        ]
    return await _until_stopped(tasks)


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
