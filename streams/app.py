"""The Faust app: topics and agents. Agents only batch, call the core and write results.

- ``fixes``: messages each holding a batch of fixes (``ingest.batching``), taken several at a
  time; screened by the quality filters, accepted ones into the Redis live index and to
  dispatchers, accepted and late ones into the history in Postgres; and, at the same time,
  fed to the visits (arrivals at and departures from patients' homes, ``streams.visits``).
- ``device-events``: emergencies open incidents and start offer waves.
- ``offer-answers``: accepts and declines, and dispatchers' assign and resolve commands
  (partitioned by incident, so one incident's are handled in order by one worker).
- a timer expires offers past their window and moves their incidents on, and escalates
  incidents not accepted within ``ESCALATE_AFTER_S`` of opening.
- a timer for late and missed visits (``streams.visits``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import faust
import orjson
import redis.asyncio as aioredis
from pydantic import TypeAdapter, ValidationError

from careknot.contracts import DeviceEvent, Fix, OfferAnswer, Presence
from careknot.metrics import FixMetrics, serve
from careknot.settings import Settings
from careknot.storage import outbox
from careknot.storage.history import History
from careknot.storage.live import LiveIndex, cell_of
from careknot.storage.postgres import Database
from dispatch.commands import DispatcherCommand
from dispatch.offers import ESCALATE_AFTER_S
from geofence.quality import AgencyPolicies, QualityPolicy, screen
from streams.dispatcher import Dispatcher
from streams.transport import LowLatencyTransport
from streams.visits import VisitKeeper

log = logging.getLogger(__name__)

FIX_MESSAGES = 512
"""Kafka messages of fixes taken at once at most: ingest packs what one wake-up took, from one
fix each when few flow to ``MAX_FIXES_PER_MESSAGE``, so the count caps little; the fixes are
then handled :data:`FIX_STEP` at a time."""
FIX_STEP = 4000
FIX_BATCH_WITHIN_S = 0.02
TICK_S = 0.5
HEARTBEAT_S = 1.0
VISIT_TICK_S = 5.0
RETRIES = 5
T = TypeVar("T", Fix, DeviceEvent, OfferAnswer, DispatcherCommand, Presence)


class CareKnotApp(faust.App):
    """faust.App with the low-latency consumer transport."""

    fetch_max_wait_ms: int = 10

    def _new_transport(self) -> Any:
        return LowLatencyTransport(self.conf.broker_consumer, self)


class Runtime:
    """The worker's connections, opened on first use inside the worker's event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = asyncio.Lock()
        self._started = False
        self.db = Database(settings)
        self.redis: aioredis.Redis = aioredis.Redis.from_url(settings.redis_url)
        self.live = LiveIndex(self.redis, settings)
        self.outbox = outbox.Outbox(self.redis, settings)
        self.dispatcher = Dispatcher(settings, self.db, self.redis)
        self.fix_metrics = FixMetrics()
        self._metrics_server: asyncio.Server | None = None

    async def ready(self) -> Runtime:
        async with self._lock:
            if not self._started:
                await self.db.__aenter__()
                self._started = True
                port = self.settings.worker_metrics_port
                self._metrics_server = await serve(self.fix_metrics.registry, port)
                await self.dispatcher.resume()
        return self

    async def close(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.close()
        if self._started:
            await self.db.__aexit__(None, None, None)
        await self.redis.aclose()


def build_app(settings: Settings) -> tuple[CareKnotApp, Runtime]:
    app = CareKnotApp(
        f"{settings.namespace}-worker",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_partitions=settings.kafka_partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=10,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        datadir=settings.worker_datadir,
    )
    app.fetch_max_wait_ms = settings.kafka_fetch_max_wait_ms
    rt = Runtime(settings)
    _agents(app, rt, settings)

    async def close_runtime(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await rt.close()

    app.on_before_shutdown.connect(close_runtime)  # type: ignore[arg-type]
    return app, rt


def _agents(app: CareKnotApp, rt: Runtime, s: Settings) -> None:
    def topic(name: str) -> Any:
        return app.topic(
            s.topic(name),
            value_serializer="raw",
            key_serializer="raw",
            partitions=s.kafka_partitions,
        )

    keeper = VisitKeeper(s, rt.db, rt.redis)

    async def forget_trackers(sender: Any, *args: Any, **kwargs: Any) -> None:
        keeper.forget_trackers()  # partitions moved: another worker may move her trackers

    app.on_partitions_revoked.connect(forget_trackers)  # type: ignore[arg-type]

    @app.agent(topic("fixes"), name="fixes")
    async def fixes(stream: Any) -> None:
        """The live index and history, and the visits, from the same fixes at the same time."""
        history = History(rt.db)
        policies = AgencyPolicies(QualityPolicy(max_future_s=s.max_clock_skew_s))
        metrics = rt.fix_metrics
        throttle = outbox.LocationThrottle()
        flusher = asyncio.create_task(outbox.keep_flushing(rt.outbox, throttle, time.time))
        try:
            async for batch in stream.take(FIX_MESSAGES, within=FIX_BATCH_WITHIN_S):
                decoded = decode_fixes(batch)
                await rt.ready()
                for n in range(0, len(decoded), FIX_STEP):
                    step = decoded[n : n + FIX_STEP]
                    live = partial(_apply_fixes, rt, step, history, policies, metrics, throttle)
                    visits = partial(keeper.on_fixes, step)
                    await asyncio.gather(
                        _with_retries("fixes", live), _with_retries("visits", visits)
                    )
                metrics.log_if_due(time.monotonic())
        finally:
            flusher.cancel()

    @app.agent(topic("presence"), name="presence")
    async def presence(stream: Any) -> None:
        """Phones gone away: their caregivers are no longer dispatch candidates."""
        async for value in stream:
            for p in _decode_all(Presence, [value]):
                live = (await rt.ready()).live
                await _with_retries(p.event_id, partial(live.mark_offline, p.caregiver_id, p.at))

    @app.agent(topic("device-events"), name="device-events")
    async def device_events(stream: Any) -> None:
        async for value in stream:
            for ev in _decode_all(DeviceEvent, [value]):
                await rt.ready()
                await _with_retries(ev.event_id, partial(rt.dispatcher.on_device_event, ev))

    @app.agent(topic("offer-answers"), name="offer-answers")
    async def answers(stream: Any) -> None:
        """Caregivers' answers and dispatchers' commands (``command`` marks the latter)."""
        async for value in stream:
            await rt.ready()
            if b'"command"' in value:
                for c in _decode_all(DispatcherCommand, [value]):
                    await _with_retries(c.command_id, partial(rt.dispatcher.on_command, c))
                continue
            for a in _decode_all(OfferAnswer, [value]):
                await _with_retries(a.answer_id, partial(rt.dispatcher.on_answer, a))

    @app.timer(TICK_S)  # type: ignore[untyped-decorator]
    async def offer_timer() -> None:
        await (await rt.ready()).dispatcher.tick(escalate_after_s=ESCALATE_AFTER_S)

    @app.timer(VISIT_TICK_S)  # type: ignore[untyped-decorator]
    async def visit_timer() -> None:
        await rt.ready()
        await _with_retries("visit tick", keeper.tick)

    @app.timer(HEARTBEAT_S)  # type: ignore[untyped-decorator]
    async def heartbeat() -> None:
        if app.consumer.assignment():
            await rt.redis.set(s.key("health", "worker"), str(time.time()), ex=5)


_FIX_LIST = TypeAdapter(list[Fix])


def decode_fixes(values: list[bytes]) -> list[Fix]:
    """The fixes of messages each holding a JSON array of fixes or one fix, in order; a fix
    that does not decode is logged and dropped, and its neighbours are kept."""
    out: list[Fix] = []
    for value in values:
        if not value.startswith(b"["):
            out += _decode_all(Fix, [value])
            continue
        try:
            out += _FIX_LIST.validate_json(value)
        except ValidationError:
            out += _decode_items(value)
    return out


def _decode_items(value: bytes) -> list[Fix]:
    try:
        items = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        log.error("undecodable batch of fixes on Kafka dropped: %s", exc)
        return []
    return _decode_all(Fix, [orjson.dumps(item) for item in items])


def _decode_all(model: type[T], values: list[bytes]) -> list[T]:
    out = []
    for value in values:
        try:
            out.append(model.model_validate_json(value))
        except ValidationError as exc:
            log.error("undecodable %s on Kafka dropped: %s", model.__name__, exc)
    return out


async def _with_retries(what: str, step: Callable[[], Awaitable[object]]) -> None:
    """Run one step of an agent; a failing server gets a few tries before the event is logged
    as failed, so one poisoned event cannot stop the stream."""
    for attempt in range(1, RETRIES + 1):
        try:
            await step()
            return
        except Exception:
            if attempt == RETRIES:
                log.exception("%s failed %d times; giving up on it", what, RETRIES)
                return
            log.warning("%s failed (attempt %d), retrying", what, attempt, exc_info=True)
            await asyncio.sleep(0.1 * 2**attempt)


async def _apply_fixes(
    rt: Runtime,
    fixes: list[Fix],
    history: History,
    policies: AgencyPolicies,
    metrics: FixMetrics,
    throttle: outbox.LocationThrottle | None = None,
) -> None:
    """Screen a batch against each caregiver's last accepted fix, move the live index with the
    accepted ones while the history keeps accepted and late fixes, then queue the newly applied
    positions for the dispatchers (coalesced by the throttle). A retry is safe: what was
    applied comes back as ``history_only`` (duplicate or out of order) and the history ignores
    what it has. Without a throttle, this batch's positions are sent at once."""
    throttle = throttle or outbox.LocationThrottle()
    live = (await rt.ready()).live
    previous = await live.last_fixes(f.caregiver_id for f in fixes)
    now = time.time()
    if fixes:
        metrics.lag.set(now - max(f.received_at for f in fixes))
    screening = screen(previous, fixes, now, policies.for_agency)
    metrics.count(len(screening.live), screening.reasons)
    recording = asyncio.ensure_future(history.record(screening.live, screening.history_only))
    try:
        applied = await live.update(screening.live)
    finally:
        await recording  # Redis and Postgres are written at the same time; both are awaited
    newest = {f.caregiver_id: f for f in screening.live if f.caregiver_id in applied}
    for f in newest.values():
        throttle.offer(f.agency_id, f.caregiver_id, _location_frame(f, applied))
    await outbox.flush_due(rt.outbox, throttle, now)


def _location_frame(f: Fix, applied: dict[str, str]) -> dict[str, Any]:
    """The ``location`` frame (:class:`LocationFrame`, as JSON) of an applied fix; built as a
    plain dict, since it is built for every caregiver who moved."""
    return {
        "type": "location",
        "caregiver_id": f.caregiver_id,
        "lat": f.lat,
        "lon": f.lon,
        "h3": cell_of(f.lat, f.lon),
        "ts": f.ts,
        "status": applied[f.caregiver_id],
    }
