"""``careknot up``: the whole system on one machine.

Finds or starts the servers (:class:`careknot.servers.ServerStack`), migrates Postgres, starts
one child process per service verb with the resolved settings in its environment, prints the
console URL with a dispatcher token, and supervises: a child that exits on its own is started
again after the one backoff's wait (:mod:`careknot.restarts`), its restarts counted in the state
file; SIGINT/SIGTERM, or a child failing ``give_up_after`` times quickly in a row, stops every
child (SIGTERM, 10 s, SIGKILL) and then the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

from adapters.key_file import with_patient_kek
from adapters.storage.postgres import Database
from careknot.restarts import RestartPolicy, RestartRecord, how_it_ended
from careknot.servers import STOP_TIMEOUT_S, ServerStack, die_with_parent
from kernel import tokens
from kernel.settings import Settings

log = logging.getLogger(__name__)

SERVERS_DIR = Path(".careknot/servers")
SUPERVISE_POLL_S = 0.2
CONSOLE_TOKEN_TTL_S = 12 * 3600

Commands = Sequence[tuple[str, list[str]]]


def settings_env(settings: Settings) -> dict[str, str]:
    """Every settings field as the ``CAREKNOT_*`` variable that sets it in a child process."""
    prefix = str(Settings.model_config.get("env_prefix", "CAREKNOT_"))
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        else:
            text = json.dumps(value)
        env[f"{prefix}{name.upper()}"] = text
    return env


def default_commands(
    simulate: bool, simulate_args: Sequence[str] = ()
) -> list[tuple[str, list[str]]]:
    """The services' commands: an ingest of positions, one of device events and one of
    telemetry, a dispatch worker, a fixes worker and a devices worker (emergencies never share
    a process with the positions' or the vitals' flood), the gateway, the HTTP API, and the
    simulated city
    (with ``simulate_args``) if asked for."""
    cli = [sys.executable, "-m", "careknot.cli"]
    commands = [
        ("ingest", [*cli, "ingest", "--streams", "positions"]),
        ("ingest-emergencies", [*cli, "ingest", "--streams", "emergencies"]),
        ("ingest-telemetry", [*cli, "ingest", "--streams", "telemetry"]),
        ("worker-dispatch", [*cli, "worker", "--role", "dispatch"]),
        ("worker-fixes", [*cli, "worker", "--role", "fixes"]),
        ("worker-devices", [*cli, "worker", "--role", "devices"]),
        ("gateway", [*cli, "gateway"]),
        ("api", [*cli, "api"]),
    ]
    return commands + ([("simulate", [*cli, "simulate", *simulate_args])] if simulate else [])


def console_agency_id() -> str:
    """The simulated city's agency, whose dispatcher the console signs in as."""
    from simulators.population import AGENCY_ID

    return AGENCY_ID


def city_family(now: float) -> str:
    """The simulated city's patient whose family's page shows a visit soonest: her caregiver
    on her way from the first minute, arriving in the next few."""
    from simulators.population import CityConfig
    from simulators.visit_plan import first_family

    return first_family(CityConfig(), now)


# ------------------------------------------------------------------ stop requests


class StopRequest:
    """SIGINT/SIGTERM set a flag (nothing else happens inside the handler)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signal handlers can only be set from the main thread
            return
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


# ------------------------------------------------------------------ children


@dataclass
class Service:
    """One service process of ``careknot up``, started again when it crashes."""

    name: str
    argv: list[str]
    record: RestartRecord
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None


Report = Callable[[dict[str, object]], None]
"""Told each service's pid and restarts whenever they change (the state file)."""


class Children:
    """The service processes, each in its own process group. One that exits on its own is
    started again after the one backoff's wait; after ``policy.give_up_after`` quick failures
    in a row of one service, all of them stop."""

    def __init__(
        self,
        commands: Commands,
        env: Mapping[str, str],
        policy: RestartPolicy | None = None,
    ) -> None:
        self._env = {**os.environ, **env}
        policy = policy or RestartPolicy()
        self.services = [
            Service(name, list(argv), RestartRecord(policy)) for name, argv in commands
        ]

    def __enter__(self) -> Children:
        try:
            for service in self.services:
                self._start(service)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def state(self) -> dict[str, object]:
        """Each service's pid (None while it waits to start again) and restarts."""
        return {
            s.name: {"pid": s.proc.pid if s.proc else None, **s.record.as_state()}
            for s in self.services
        }

    def supervise(self, stop: StopRequest, report: Report | None = None) -> int:
        """Block until a stop is requested (0) or a service fails too often in a row (1),
        starting crashed services again meanwhile; ``report`` is told of every change."""
        tell = report or (lambda state: None)
        tell(self.state())
        while not stop.requested:
            now = time.monotonic()
            for service in self.services:
                if service.proc is not None and service.proc.poll() is not None:
                    if not self._exited(service, now):
                        tell(self.state())
                        return 1
                    tell(self.state())
                elif service.restart_at is not None and service.restart_at <= now:
                    self._start(service)
                    service.record.restarted()
                    tell(self.state())
            time.sleep(SUPERVISE_POLL_S)
        log.info("signal %s: stopping", stop.signal)
        return 0

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every child's process group, wait up to ``timeout`` in all, then SIGKILL;
        none is started again."""
        running = [(s.name, s.proc) for s in self.services if s.proc is not None]
        for _, proc in running:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, proc in running:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", name, timeout)
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        for service in self.services:
            service.proc, service.restart_at = None, None

    def _start(self, service: Service) -> None:
        service.proc = subprocess.Popen(
            service.argv,
            env=self._env,
            stdin=subprocess.DEVNULL,
            process_group=0,
            preexec_fn=die_with_parent(signal.SIGTERM),  # noqa: PLW1509 - prctl only
        )
        service.started_at, service.restart_at = time.monotonic(), None
        verb = "restarted" if service.record.last_exit is not None else "started"
        log.info("%s %s (pid %d)", verb, service.name, service.proc.pid)

    def _exited(self, service: Service, now: float) -> bool:
        """Note a service's exit (what is left of its process group is killed) and plan its
        restart: False when it failed too often in a row."""
        proc = service.proc
        assert proc is not None
        _signal_group(proc, signal.SIGKILL)
        service.proc = None
        ran_s = now - service.started_at
        wait = service.record.exited(proc.returncode, ran_s)
        ended = (
            f"{service.name} (pid {proc.pid}) {how_it_ended(proc.returncode)} after {ran_s:.1f} s"
        )
        if wait is None:
            log.error(
                "%s, failure %d in a row: giving up, stopping everything",
                ended,
                service.record.failures,
            )
            return False
        service.restart_at = now + wait
        log.error(
            "%s; restarting it in %.1f s (failure %d in a row, %d restarts so far)",
            ended,
            wait,
            service.record.failures,
            service.record.restarts,
        )
        return True


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the child's process group (it leads it), including any grandchildren."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


# ------------------------------------------------------------------ up


async def _migrate(settings: Settings) -> None:
    async with Database(settings) as db:
        applied = await db.migrate()
    log.info("schema %s: applied %s", settings.namespace, applied or "nothing (up to date)")


def _write_atomically(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def announce(settings: Settings, state_file: str | None, simulate: bool = False) -> Report:
    """Print the console URL with a dispatcher token (and, with the simulated city, a family's
    page for one of its patients); the report that writes it to ``state_file`` as JSON, with
    the services' pids and restarts, whenever they change."""
    ring, now = tokens.keyring_of(settings), time.time()
    agency = console_agency_id()
    token = tokens.mint(ring, "dispatcher", "console", agency, CONSOLE_TOKEN_TTL_S, now)
    host_port = f"{settings.gateway_host}:{settings.gateway_port}"
    # in the fragment: the browser never sends it to the server, so no log keeps it
    print(f"CareKnot is up: open http://{host_port}/#token={token}", flush=True)
    if simulate:
        patient = city_family(now)  # a home the city's caregivers reach soon
        family = tokens.mint(ring, "family", "family", agency, CONSOLE_TOKEN_TTL_S, now, [patient])
        print(f"A family's page ({patient}): http://{host_port}/family#token={family}", flush=True)
    state = {
        "gateway_url": f"http://{host_port}",
        "ws_url": f"ws://{host_port}/ws",
        "settings": public_settings(settings),
    }

    def report(services: dict[str, object]) -> None:
        if state_file:
            _write_atomically(Path(state_file), {**state, "services": services})

    return report


SECRET_SETTINGS = frozenset({"CAREKNOT_TOKEN_SECRET", "CAREKNOT_TOKEN_KEYS"})
"""Settings a state file never holds."""


def public_settings(settings: Settings) -> dict[str, str]:
    """The settings as child processes get them, less the token keys, and a Postgres
    password masked: what a state file (readable by tools) may hold."""
    env = {k: v for k, v in settings_env(settings).items() if k not in SECRET_SETTINGS}
    env["CAREKNOT_POSTGRES_DSN"] = masked_dsn(settings.postgres_dsn)
    return env


def masked_dsn(dsn: str) -> str:
    """``dsn`` with its password, if it has one, as ``***``."""
    parts = urlsplit(dsn)
    if not parts.password:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def with_token_keys(settings: Settings) -> Settings:
    """Settings whose token keys the services can find: those given, else the keys file
    (written with a fresh key when there is none, readable by its owner only), named by its
    absolute path. The public development key only when told it is development."""
    if settings.token_keys or (settings.development and tokens.keyring_of(settings).development):
        return settings
    path = Path(settings.token_keys_file).resolve()
    tokens.write_keys_file(path)
    return settings.model_copy(update={"token_keys_file": str(path)})


def up(
    settings: Settings,
    *,
    simulate: bool,
    state_file: str | None,
    commands: Commands | None = None,
    workdir: Path = SERVERS_DIR,
    policy: RestartPolicy | None = None,
    simulate_args: Sequence[str] = (),
) -> int:
    """Run everything until SIGINT/SIGTERM (returns 0) or until a child fails too often in a
    row (returns 1); a child that exits on its own is started again meanwhile."""
    stack = ServerStack(settings, workdir, mqtt_identity=True)  # its own Mosquitto: dynsec
    with StopRequest().installed() as stop, stack as started:
        resolved = with_patient_kek(with_token_keys(started))
        asyncio.run(_migrate(resolved))
        if stop.requested:
            return 0
        argvs = default_commands(simulate, simulate_args) if commands is None else commands
        with Children(argvs, settings_env(resolved), policy) as kids:
            return kids.supervise(stop, announce(resolved, state_file, simulate))
