"""``careknot up`` as a child process, for tests and benchmarks that need the whole system.

``with RunningSystem(settings, workdir, simulate=True) as settings: ...`` starts it, waits for
its state file (so every service is started), and stops it with SIGINT, as Ctrl-C would.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import redis.asyncio as aioredis

from careknot.servers import die_with_parent, free_port
from careknot.up import settings_env
from kernel.errors import ServerStartError
from kernel.settings import Settings
from kernel.waiting import poll_until

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0


def resolved_settings(env: dict[str, str]) -> Settings:
    """The settings ``careknot up`` wrote in its state file (the servers it actually uses)."""
    prefix = "CAREKNOT_"
    return Settings.model_validate(
        {k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)}
    )


def own_token_key() -> str:
    """A token key of a system's own (``kid:secret``), so the clients it runs for sign what its
    gateway verifies."""
    return f"k{secrets.token_hex(3)}:{secrets.token_urlsafe(32)}"


def isolated(settings: Settings, workdir: Path, **changes: object) -> Settings:
    """Settings for a system of its own (benchmarks): a fresh namespace, a free gateway port,
    and a Kafka and an MQTT broker of its own (nothing answers on the free ports they name, so
    ``careknot up`` starts them): MQTT topics are not namespaced, and every ingest on a shared
    broker would parse another system's load."""
    update: dict[str, object] = {
        "namespace": f"bench{secrets.token_hex(3)}",
        "token_keys": settings.token_keys or own_token_key(),
        "gateway_port": free_port(),
        "api_port": free_port(),
        "api_metrics_port": free_port(),
        "worker_datadir": str(workdir / "worker"),
        "kafka_bootstrap": f"127.0.0.1:{free_port()}",
        "mqtt_url": f"mqtt://127.0.0.1:{free_port()}",
    }
    return settings.model_copy(update={**update, **changes})


class RunningSystem:
    def __init__(self, settings: Settings, workdir: Path, *, simulate: bool) -> None:
        self.settings = settings
        self._workdir = workdir
        self._simulate = simulate
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "careknot-up.log"
        self.returncode: int | None = None

    def __enter__(self) -> Settings:
        state = self._workdir / "state.json"
        argv = [sys.executable, "-m", "careknot.cli", "up", "--state-file", str(state)]
        with self.log_path.open("wb") as log_file:
            self._proc = subprocess.Popen(
                [*argv, *(["--simulate"] if self._simulate else [])],
                env={**os.environ, **settings_env(self.settings)},
                cwd=self._workdir,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(signal.SIGINT),  # noqa: PLW1509 - prctl only
            )
        try:
            self._wait_for(state)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        kept = json.loads(state.read_text())["settings"]
        # what the state file does not say (token keys, a masked password) is what was given
        given = settings_env(self.settings)
        return resolved_settings({**given, **{k: v for k, v in kept.items() if ":***@" not in v}})

    def _wait_for(self, state: Path) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while not state.exists():
            if self._proc.poll() is not None:
                raise ServerStartError("careknot up", f"exited with {self._proc.returncode}")
            if time.monotonic() > deadline:
                raise ServerStartError("careknot up", "no state file in time")
            time.sleep(0.1)

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self.returncode = self._proc.returncode

    def log_tail(self, chars: int = 6000) -> str:
        """The end of what the system printed (its services' logs)."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""


async def worker_ready(
    settings: Settings, within: float, roles: Sequence[str] = ("dispatch", "fixes")
) -> None:
    """Wait until workers of ``settings.namespace`` hold their Kafka partitions (they
    heartbeat): one of each role in ``roles``, or one doing everything (role ``all``)."""
    r = aioredis.Redis.from_url(settings.redis_url)
    keys = [settings.keys.worker_health(role) for role in (*roles, "all")]

    async def ready() -> bool | None:
        beats = await r.mget(keys)
        return True if beats[-1] or all(beats[:-1]) else None

    try:
        await poll_until(ready, within, f"the workers ({', '.join(roles)})")
    finally:
        await r.aclose()
