"""The worker's connections and services, opened on first use inside the worker's loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TypeVar

from pydantic import BaseModel

from adapters.metrics import CommandMetrics, CopyMetrics, DeadLetterMetrics, FixMetrics, serve
from adapters.storage.connection import RedisConnection
from adapters.storage.postgres import Database
from kernel import keys
from kernel.backoff import Backoff
from kernel.contracts import AlarmCommand
from kernel.settings import Settings
from kernel.waiting import answers
from streams.dead_letters import DeadLetters
from streams.decoding import Refused, decode_each
from streams.dispatcher import Dispatcher
from streams.handling import Park

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


class Runtime:
    """The worker's connections, opened on first use inside the worker's event loop; a worker
    that dispatches keeps a copy of the live index in memory and resumes the open incidents
    when it starts."""

    def __init__(
        self,
        settings: Settings,
        *,
        dispatching: bool = True,
        counting_fixes: bool = True,
        watching_devices: bool = False,
    ) -> None:
        self.settings = settings
        self._dispatching = dispatching
        self._counting_fixes = counting_fixes
        self._watching_devices = watching_devices
        self._lock = asyncio.Lock()
        self._started = self._opened = self._producing = self._serving = False
        self.db = Database(settings)
        self.redis = RedisConnection.open(settings.redis_url)
        self.live = self.redis.live_index(settings)
        self.outbox = self.redis.outbox(settings)
        self.mirror = self.redis.live_mirror(settings) if dispatching else None
        self.dispatcher = Dispatcher(
            settings, self.db, self.redis, mirror=self.mirror, park=self.park
        )
        self._mirror_task: asyncio.Task[None] | None = None
        self.fix_metrics = FixMetrics()
        counted_with = self.fix_metrics.registry if counting_fixes else None
        self.dead_letters = DeadLetters(settings, DeadLetterMetrics(counted_with))
        self._metrics_server: asyncio.Server | None = None

    async def ready(self) -> Runtime:
        """The runtime, started: Postgres open, the dead-letter producer, the metrics server,
        and (dispatching) the copy of the live index and the catch-up of what fell due. While a
        server is away it waits, trying again with the one backoff: an agent never fails for
        a start that did not happen yet; each part starts once."""
        async with self._lock:
            backoff = Backoff(first=0.5, cap=5.0)
            while not self._started:
                try:
                    await self._start()
                except Exception as exc:
                    delay = backoff.next()
                    log.warning("worker not ready (%s); trying again in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
        return self

    async def _start(self) -> None:
        if not self._serving:  # first: /healthz says which server it waits for
            await self._serve_metrics()
            self._serving = True
        if not self._producing:
            await self.dead_letters.start()
            self._producing = True
        if not self._opened:
            await self.db.__aenter__()
            self._opened = True
        if self.mirror is not None and self._mirror_task is None:
            self._mirror_task = asyncio.create_task(self.mirror.run())  # Redis answers meanwhile
        if self._dispatching:
            await self.dispatcher.resume()
        self._started = True

    async def _serve_metrics(self) -> None:
        """The fixes worker serves its counts of fixes, the dispatch worker those of its copy
        of the live index, the devices worker those of its routines' watch; a worker of both
        roles serves both on the fixes worker's port. A port taken is logged: the worker works
        on without its metrics."""
        try:
            await self._open_metrics_port()
        except OSError as exc:
            log.error("worker metrics not served: %s", exc)

    async def _open_metrics_port(self) -> None:
        if self._counting_fixes:
            registry, port = self.fix_metrics.registry, self.settings.worker_metrics_port
        elif self.mirror is not None:
            registry, port = self.dead_letters.metrics.registry, self.settings.dispatch_metrics_port
        elif self._watching_devices:
            registry, port = self.dead_letters.metrics.registry, self.settings.devices_metrics_port
        else:
            return
        if self.mirror is not None:
            CopyMetrics(self.mirror, registry)
            CommandMetrics(self.dispatcher.refused, registry)
        host = self.settings.metrics_host
        self._metrics_server = await serve(registry, port, host, health=self.health)

    async def health(self) -> dict[str, bool]:
        """Whether Postgres, Redis and Kafka answer, asked at once (``/healthz``)."""
        postgres, redis, kafka = await asyncio.gather(
            answers(self.db.ping()), answers(self.redis.ping()), answers(self.dead_letters.ping())
        )
        return {"postgres": postgres, "redis": redis, "kafka": kafka}

    async def keep_redis_whole(self) -> None:
        """When Redis lost its data, the dispatch worker that notices first puts the live
        picture back from the record (positions, statuses, cells, offer records, trackers) and
        tells again what clients hold: standing offers, unresolved incidents."""
        keys = self.settings.keys
        if not await self.redis.lost_its_data(keys):
            return
        log.warning("Redis holds no mark of this namespace: resyncing it from the record")
        try:
            await self.dispatcher.resync()
            done = await self.redis.rebuild(self.db, self.settings)
        except BaseException:
            await self.redis.lose_mark(keys)  # the next tick tries again
            raise
        log.warning("Redis resynced: %s", done)

    async def decode(self, model: type[M], values: list[bytes], topic: str) -> list[M]:
        """The values of the logical ``topic`` that decode as ``model``; the others (a
        tombstone among them) are dead-lettered and counted."""
        refused: list[Refused] = []
        decoded = decode_each(model, values, refused)
        await self.park(topic, refused)
        return decoded

    async def park(self, topic: str, refused: list[Refused]) -> None:
        """Dead-letter values refused on the logical ``topic`` (nothing when none were)."""
        if refused:
            await (await self.ready()).dead_letters.park(topic, refused)

    async def send_command(self, cmd: AlarmCommand) -> None:
        """Produce a command of this worker's own to the offer-answers topic, keyed by its
        alarm as the gateway keys a dispatcher's; raises :class:`StorageError` unless Kafka
        has it (the step that sends it is tried again)."""
        producer = (await self.ready()).dead_letters.producer
        value = cmd.model_dump_json().encode()
        (failure,) = await producer.send_all(keys.OFFER_ANSWERS, [(cmd.alarm_id, value)])
        if failure is not None:
            raise failure

    def parker_of(self, topic: str, records: Sequence[BaseModel]) -> Park:
        """What parks decoded ``records`` of the logical ``topic``, a letter each (each small
        enough to be replayed whole, where a packed message would be cut), written out only
        if it comes to parking."""

        async def park(reason: str, detail: str) -> None:
            values = [r.model_dump_json().encode() for r in records]
            await self.park(topic, [Refused(v, reason, detail) for v in values])

        return park

    def parker(self, topic: str, values: Sequence[bytes]) -> Park:
        """What parks ``values`` of the logical ``topic`` when the step taking them fails."""

        async def park(reason: str, detail: str) -> None:
            await self.park(topic, [Refused(v, reason, detail) for v in values])

        return park

    async def close(self) -> None:
        if self._mirror_task is not None:
            self._mirror_task.cancel()
        if self._metrics_server is not None:
            self._metrics_server.close()
        try:
            if self._producing:
                await self.dead_letters.stop()
        finally:
            if self._opened:
                await self.db.__aexit__(None, None, None)
        await self.redis.close()
