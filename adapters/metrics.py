"""Prometheus metrics: what each service counts, and a small asyncio endpoint serving them.

Every service instance owns its :class:`prometheus_client.CollectorRegistry` (two services in
one process, as in the tests, never collide). :func:`serve` answers ``GET /metrics`` in the
Prometheus text format on the service's own event loop, with no thread; port 0 serves nothing.

The Faust worker's own web server is off; the fixes worker serves :class:`FixMetrics` (the fixes
it screens, by verdict and reason, and how far behind ingest it is) the same way on
``CAREKNOT_WORKER_METRICS_PORT``, and logs the counts every :data:`LOG_EVERY_S`; the dispatch
worker serves :class:`CopyMetrics` (its copy of the live index) on
``CAREKNOT_DISPATCH_METRICS_PORT`` (a worker of both roles serves both on the first); each
worker also serves :class:`DeadLetterMetrics`, the Kafka values it could not decode.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol, TypeAlias

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from adapters.storage.live_mirror import LiveMirror

log = logging.getLogger(__name__)

LOG_EVERY_S = 30.0
READ_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 8192
Handler: TypeAlias = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Health: TypeAlias = Callable[[], Awaitable[Mapping[str, bool]]]
"""Whether each server a service needs answers, by name."""


class IngestMetrics:
    """What ingest counts: accepted messages, rejects by reason, Kafka produce failures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.fixes_accepted = Counter(
            "careknot_ingest_fixes_accepted", "Fixes produced to Kafka", ["source"], registry=r
        )
        self.events_accepted = Counter(
            "careknot_ingest_device_events_accepted", "Device events produced", registry=r
        )
        self.telemetry_accepted = Counter(
            "careknot_ingest_telemetry_samples_accepted",
            "Telemetry samples produced to Kafka (a message may carry several)",
            registry=r,
        )
        self.rejected = Counter(
            "careknot_ingest_rejected", "Payloads dead-lettered, by reason", ["reason"], registry=r
        )
        self.refused_bytes = Counter(
            "careknot_ingest_refused_bytes",
            "Bytes of MQTT publishes refused for their size (too_large), dropped as they came",
            registry=r,
        )
        self.produce_failures = Counter(
            "careknot_ingest_produce_failures",
            "records (fixes, events, letters) whose Kafka delivery failed",
            registry=r,
        )
        self.presence = Counter(
            "careknot_ingest_presence",
            "Phones come online or gone offline (their MQTT last will), produced, by state",
            ["state"],
            registry=r,
        )
        self.device_status = Counter(
            "careknot_ingest_device_status",
            "Home devices' heartbeats, births (online) and last wills (offline) produced",
            ["status"],
            registry=r,
        )
        self.owntracks_ignored = Counter(
            "careknot_ingest_owntracks_ignored",
            "OwnTracks messages recognised and not used, by _type",
            ["type"],
            registry=r,
        )
        self.last_message = Gauge(
            "careknot_ingest_last_message_timestamp_seconds",
            "When the last MQTT message arrived (epoch s)",
            registry=r,
        )


def totals(registry: CollectorRegistry) -> dict[str, float]:
    """Every non-zero counter sample as ``name{labels}: value``, for log lines."""
    out: dict[str, float] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.value:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


class FixMetrics:
    """What the worker counts of the fixes it screens: by verdict and reason; and its lag."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.screened = Counter(
            "careknot_worker_fixes",
            "Fixes screened by the quality filters, by verdict and reason",
            ["verdict", "reason"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "careknot_worker_fix_lag_seconds",
            "From ingest receiving the newest fix of the last batch to the worker screening it",
            registry=self.registry,
        )
        self._accepted = 0
        self._others: dict[tuple[str, str], int] = {}
        self._logged_at: float | None = None

    def count(self, accepted: int, others: Mapping[tuple[str, str], int]) -> None:
        if accepted:
            self.screened.labels("accept", "").inc(accepted)
            self._accepted += accepted
        for (verdict, reason), n in others.items():
            self.screened.labels(verdict, reason).inc(n)
            self._others[verdict, reason] = self._others.get((verdict, reason), 0) + n

    def log_if_due(self, now: float) -> None:
        """Log the totals every :data:`LOG_EVERY_S` (the first call only starts the clock)."""
        if self._logged_at is None:
            self._logged_at = now
        if now - self._logged_at < LOG_EVERY_S:
            return
        self._logged_at = now
        dropped = {f"{v}:{r}": n for (v, r), n in sorted(self._others.items())}
        log.info("fixes screened: %d accepted, not accepted by reason %s", self._accepted, dropped)


class DeadLetterMetrics:
    """What a worker dead-letters: Kafka values it could not decode, by logical topic and
    reason, and the dead letters Kafka did not take (logged instead)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.parked = Counter(
            "careknot_worker_dead_letters",
            "Kafka values not taken, dead-lettered, by topic and reason",
            ["topic", "reason"],
            registry=self.registry,
        )
        self.failed = Counter(
            "careknot_worker_dead_letter_failures",
            "Dead letters Kafka did not take, logged with their payload instead",
            registry=self.registry,
        )


class CopyMetrics:
    """The dispatch worker's copy of the live index, read from it when scraped: searches by
    outcome (answered from the copy; sent to Redis because the copy was behind, or not ready),
    copies made, the last change applied, whether it is ready, and how many caregivers it holds."""

    def __init__(self, mirror: LiveMirror, registry: CollectorRegistry | None = None) -> None:
        self._mirror = mirror
        self.registry = registry or CollectorRegistry()
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        m = self._mirror
        searches = CounterMetricFamily(
            "careknot_live_copy_searches",
            "Candidate searches: answered from the copy, or sent to Redis (behind, not_ready)",
            labels=["outcome"],
        )
        for outcome, n in (
            ("answered", m.answered),
            ("behind", m.behind),
            ("not_ready", m.unready),
        ):
            searches.add_metric([outcome], n)
        yield searches
        yield CounterMetricFamily(
            "careknot_live_copy_made", "Copies of the live index made", value=m.copies
        )
        yield GaugeMetricFamily("careknot_live_copy_change", "The last change applied", value=m.seq)
        yield GaugeMetricFamily("careknot_live_copy_ready", "1 if searches use it", value=m.ready)
        yield GaugeMetricFamily(
            "careknot_live_copy_caregivers", "Caregivers in the copy", value=len(m.index)
        )


class CommandMetrics:
    """Dispatchers' commands the dispatch worker refused, by reason, read when scraped."""

    def __init__(self, refused: Mapping[str, int], registry: CollectorRegistry) -> None:
        self._refused = refused
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "careknot_dispatch_commands_refused",
            "Dispatchers' assign and resolve commands refused, by reason",
            labels=["reason"],
        )
        for reason, n in sorted(self._refused.items()):
            family.add_metric([reason], n)
        yield family


class ApiMetrics:
    """What the HTTP API refused, by status and reason, read when scraped."""

    def __init__(self, refused: Mapping[tuple[int, str], int], registry: CollectorRegistry) -> None:
        self._refused = refused
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "careknot_api_refused", "Requests the API refused, by status and reason",
            labels=["status", "reason"],
        )  # fmt: skip
        for (status, reason), n in sorted(self._refused.items()):
            family.add_metric([str(status), reason], n)
        yield family


class Watch(Protocol):
    """What a routines' watch says of itself (``streams.routine_keeper.RoutineKeeper``)."""

    @property
    def ignored(self) -> Mapping[str, int]: ...
    @property
    def raised(self) -> Mapping[str, int]: ...
    @property
    def scored(self) -> int: ...
    @property
    def retrained(self) -> int: ...

    def __len__(self) -> int: ...


class RoutineMetrics:
    """The devices worker's watch over each home's routine, read when scraped: homes watched,
    scorings, retrainings, routine alarms raised by kind, ambient events left out by why."""

    def __init__(self, watch: Watch, registry: CollectorRegistry) -> None:
        self._watch = watch
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        w = self._watch
        yield GaugeMetricFamily("careknot_routine_homes", "Homes whose routine is watched", len(w))
        yield CounterMetricFamily(
            "careknot_routine_scorings", "Homes scored (on events, and every tick)", value=w.scored
        )
        yield CounterMetricFamily(
            "careknot_routine_retrainings", "Homes' models fitted and kept", value=w.retrained
        )
        raised = CounterMetricFamily(
            "careknot_routine_alarms_raised", "Routine alarms raised or repeated", labels=["kind"]
        )
        for kind, n in sorted(w.raised.items()):
            raised.add_metric([kind], n)
        yield raised
        ignored = CounterMetricFamily(
            "careknot_routine_events_ignored",
            "Ambient events left out: unregistered_device, unknown_room",
            labels=["reason"],
        )
        for reason, n in sorted(w.ignored.items()):
            ignored.add_metric([reason], n)
        yield ignored


async def serve(
    registry: CollectorRegistry, port: int, host: str = "127.0.0.1", health: Health | None = None
) -> asyncio.Server | None:
    """Serve ``registry`` on ``host:port`` until the returned server is closed; with
    ``health``, ``GET /healthz`` too: 200 when every server it names answers, else 503, the body
    naming which do not (``{"ok": false, "postgres": false, "redis": true, "down":
    ["postgres"]}``).

    Port 0 serves nothing. A port already taken is logged and skipped: metrics are worth less
    than the service that counts them (two services on one machine need two ports).
    """
    if port == 0:
        return None
    handler = _handler(registry, health)
    try:
        return await asyncio.start_server(handler, host, port, limit=MAX_REQUEST_BYTES)
    except OSError as exc:
        log.warning("metrics not served: cannot listen on %s:%d: %s", host, port, exc)
        return None


def _handler(registry: CollectorRegistry, health: Health | None) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            if health is not None and _path(head) == b"/healthz":
                writer.write(_health_response(await health()))
            else:
                writer.write(_response(head, registry))
            await writer.drain()
        except (
            TimeoutError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            log.debug("metrics request abandoned", exc_info=True)
        finally:
            writer.close()

    return handle


def _path(head: bytes) -> bytes:
    """The path of a GET, or empty."""
    parts = head.split(b" ", 2)
    return parts[1].split(b"?")[0] if len(parts) >= 2 and parts[0] == b"GET" else b""


def _health_response(checks: Mapping[str, bool]) -> bytes:
    down = [name for name, up in checks.items() if not up]
    body = json.dumps({"ok": not down, **checks, "down": down}).encode()
    status = "503 Service Unavailable" if down else "200 OK"
    header = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return header.encode() + body


def _response(head: bytes, registry: CollectorRegistry) -> bytes:
    if _path(head) not in (b"/", b"/metrics"):
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    body = generate_latest(registry)
    header = (
        "HTTP/1.1 200 OK\r\n"
        f"Content-Type: {CONTENT_TYPE_PLAIN_0_0_4}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return header.encode() + body
