"""What every journey needs: ``careknot up`` as a child process, and its own worker ready."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis.asyncio as aioredis

from careknot.running import RunningSystem, worker_ready
from kernel.settings import Settings
from streams.app import ROLES
from tests.support import free_port, processes_in

READY_WITHIN_S = 90.0


@contextmanager
def running_system(
    settings: Settings, workdir: Path, *, simulate: bool, **changes: object
) -> Iterator[Settings]:
    """``careknot up`` with ``changes`` to the settings on a free gateway port; on the way out
    it is stopped with SIGINT, its log tail is shown, and no process of it may be left."""
    settings = settings.model_copy(
        update={
            "gateway_port": free_port(),
            "api_port": free_port(),
            "worker_datadir": str(workdir / "worker"),
            **changes,
        }
    )
    running = RunningSystem(settings, workdir, simulate=simulate)
    try:
        with running:
            yield settings
    finally:
        sys.stderr.write(f"--- careknot up said:\n{running.log_tail()}\n")
    assert running.returncode == 0
    assert processes_in(settings.namespace) == [], "careknot up left processes behind"


async def own_worker_ready(settings: Settings) -> None:
    """Wait for this system's worker: a previous module's worker in the same namespace may have
    left its heartbeat (it lasts 5 s), and only a live worker sets it again."""
    r = aioredis.Redis.from_url(settings.redis_url)
    try:
        await r.delete(*(settings.keys.worker_health(role) for role in ROLES))
    finally:
        await r.aclose()
    await worker_ready(settings, READY_WITHIN_S)
