"""``careknot up``: the whole system on one machine.

Finds or starts the servers (:class:`careknot.servers.ServerStack`), migrates Postgres, starts
one child process per service verb with the resolved settings in its environment, prints the
console URL with a dispatcher token, and supervises: SIGINT/SIGTERM, or any child exiting,
stops every child (SIGTERM, 10 s, SIGKILL) and then the servers.
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
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

from adapters.storage.postgres import Database
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


def default_commands(simulate: bool) -> list[tuple[str, list[str]]]:
    """The services' commands: an ingest of positions and one of device events, a dispatch
    worker and a fixes worker (emergencies never share a process with the positions' flood),
    the gateway, and the simulated city if asked for."""
    cli = [sys.executable, "-m", "careknot.cli"]
    commands = [
        ("ingest", [*cli, "ingest", "--streams", "positions"]),
        ("ingest-emergencies", [*cli, "ingest", "--streams", "emergencies"]),
        ("worker-dispatch", [*cli, "worker", "--role", "dispatch"]),
        ("worker-fixes", [*cli, "worker", "--role", "fixes"]),
        ("gateway", [*cli, "gateway"]),
    ]
    return commands + ([("simulate", [*cli, "simulate"])] if simulate else [])


def console_agency_id() -> str:
    """The simulated city's agency, whose dispatcher the console signs in as."""
    from simulators.population import AGENCY_ID

    return AGENCY_ID


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


class Children:
    """The service processes; each in its own process group, stopped together."""

    def __init__(self, commands: Commands, env: Mapping[str, str]) -> None:
        self._commands = list(commands)
        self._env = {**os.environ, **env}
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def __enter__(self) -> Children:
        try:
            for name, argv in self._commands:
                proc = subprocess.Popen(
                    argv,
                    env=self._env,
                    stdin=subprocess.DEVNULL,
                    process_group=0,
                    preexec_fn=die_with_parent(signal.SIGTERM),  # noqa: PLW1509 - prctl only
                )
                log.info("started %s (pid %d)", name, proc.pid)
                self.procs.append((name, proc))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def supervise(self, stop: StopRequest) -> int:
        """Block until a stop is requested (0) or a child exits on its own (1)."""
        while not stop.requested:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    log.error("%s exited with status %s: stopping", name, proc.returncode)
                    return 1
            time.sleep(SUPERVISE_POLL_S)
        log.info("signal %s: stopping", stop.signal)
        return 0

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every child's process group, wait up to ``timeout`` in all, then SIGKILL."""
        for _, proc in self.procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killing it", name, timeout)
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        self.procs.clear()


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


def announce(settings: Settings, state_file: str | None) -> None:
    """Print the console URL with a dispatcher token; write it to ``state_file`` as JSON."""
    claims = tokens.Claims(
        role="dispatcher",
        sub="console",
        agency=console_agency_id(),
        exp=time.time() + CONSOLE_TOKEN_TTL_S,
    )
    token = tokens.issue(claims, settings.token_secret)
    host_port = f"{settings.gateway_host}:{settings.gateway_port}"
    print(f"CareKnot is up: open http://{host_port}/?token={token}", flush=True)
    if state_file:
        state = {
            "gateway_url": f"http://{host_port}",
            "ws_url": f"ws://{host_port}/ws",
            "token": token,
            "settings": settings_env(settings),
        }
        _write_atomically(Path(state_file), state)


def up(
    settings: Settings,
    *,
    simulate: bool,
    state_file: str | None,
    commands: Commands | None = None,
    workdir: Path = SERVERS_DIR,
) -> int:
    """Run everything until SIGINT/SIGTERM (returns 0) or until a child dies (returns 1)."""
    with StopRequest().installed() as stop, ServerStack(settings, workdir) as resolved:
        asyncio.run(_migrate(resolved))
        if stop.requested:
            return 0
        argvs = default_commands(simulate) if commands is None else commands
        with Children(argvs, settings_env(resolved)) as kids:
            announce(resolved, state_file)
            return kids.supervise(stop)
