"""The Faust app of a worker: which agents it runs, by role.

A worker's role is ``dispatch`` (emergencies, answers, commands and the offer timer:
``streams.dispatch_flow``), ``fixes`` (positions, presence and visits: ``streams.fix_flow``),
``devices`` (the home devices' health: ``streams.device_health_flow``; vitals:
``streams.vitals_flow``; each home's event history: ``streams.device_history_flow``; each home's
routine: ``streams.routine_flow``; who read what through the gateway:
``streams.access_log_flow``) or
``all``. ``careknot up`` runs one of each of the first three, so
an emergency never waits behind a batch of fixes or vitals in the same event loop; each role
has its own consumer group, so workers of one role share its partitions (but the devices'
health is watched by one worker: see ``streams.device_keeper``).
Do not mix ``all`` with the others in one namespace: both would handle the same events.
Agents only batch, call the core and write results.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import faust

from adapters.faust_transport import LowLatencyTransport
from kernel.errors import StorageError
from kernel.settings import Settings
from streams import (
    access_log_flow,
    device_health_flow,
    device_history_flow,
    dispatch_flow,
    fix_flow,
    retention_flow,
    routine_flow,
    vitals_flow,
)
from streams.runtime import Runtime

log = logging.getLogger(__name__)

WorkerRole = Literal["all", "dispatch", "fixes", "devices"]
ROLES: tuple[WorkerRole, ...] = ("all", "dispatch", "fixes", "devices")
HEARTBEAT_S = 1.0
HEARTBEAT_TTL_S = 5  # a worker whose heartbeats stop is taken for dead this much later


class CareKnotApp(faust.App):
    """faust.App with the low-latency consumer transport."""

    fetch_max_wait_ms: int = 25

    def _new_transport(self) -> Any:
        return LowLatencyTransport(self.conf.broker_consumer, self)


def app_id(settings: Settings, role: WorkerRole) -> str:
    """The Faust app id, and so the consumer group, of a role's workers."""
    return settings.keys.worker_group(role)


def build_app(settings: Settings, role: WorkerRole = "all") -> tuple[CareKnotApp, Runtime]:
    app = CareKnotApp(
        app_id(settings, role),
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
    app.fetch_max_wait_ms = (
        settings.fixes_fetch_max_wait_ms if role == "fixes" else settings.kafka_fetch_max_wait_ms
    )
    rt = Runtime(
        settings,
        dispatching=role in ("all", "dispatch"),
        counting_fixes=role in ("all", "fixes"),
        watching_devices=role == "devices",
    )
    _agents(app, rt, settings, role)

    async def close_runtime(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await rt.close()

    app.on_before_shutdown.connect(close_runtime)  # type: ignore[arg-type]
    return app, rt


def _agents(app: CareKnotApp, rt: Runtime, s: Settings, role: WorkerRole) -> None:
    def topic(name: str) -> Any:
        return app.topic(
            s.keys.topic(name),
            value_serializer="raw",
            key_serializer="raw",
            partitions=s.kafka_partitions,
        )

    if role in ("all", "dispatch"):
        dispatch_flow.register(app, rt, s, topic)
    if role in ("all", "fixes"):
        fix_flow.register(app, rt, s, topic)
        retention_flow.register(app, rt, s)
    if role in ("all", "devices"):
        device_health_flow.register(app, rt, s, topic)
        vitals_flow.register(app, rt, s, topic)
        access_log_flow.register(app, rt, s, topic)
        routines = routine_flow.register(app, rt, s)
        device_history_flow.register(app, rt, s, topic, routine_flow.feed(routines))

    @app.timer(HEARTBEAT_S)  # type: ignore[untyped-decorator]
    async def heartbeat() -> None:
        """While it holds partitions; a missed beat is logged, and the next one tries again."""
        if not app.consumer.assignment():
            return
        try:
            await rt.redis.worker_alive(s.keys, role, time.time(), HEARTBEAT_TTL_S)
        except StorageError as exc:
            log.warning("worker heartbeat not written: %s", exc)
