"""What every journey needs: ``careknot up`` as a child process, and its own worker ready."""

from __future__ import annotations

import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from adapters.storage.postgres import Database
from careknot.running import RunningSystem, worker_ready
from kernel.settings import Settings
from streams.app import ROLES
from tests.support import free_port, processes_in

READY_WITHIN_S = 90.0


@contextmanager
def running_system(
    settings: Settings, workdir: Path, *, simulate: bool, **changes: object
) -> Iterator[Settings]:
    """``careknot up`` with ``changes`` to the settings on a free gateway port, yielding the
    settings it runs with; on the way out it is stopped with SIGINT, its log tail is shown, and
    no process of it may be left."""
    settings = settings.model_copy(
        update={
            "gateway_port": free_port(),
            "api_port": free_port(),
            "api_metrics_port": free_port(),
            "worker_datadir": str(workdir / "worker"),
            **changes,
        }
    )
    running = RunningSystem(settings, workdir, simulate=simulate)
    try:
        with running as live:  # as it resolved them: a server it started has its own port
            yield live
    finally:
        sys.stderr.write(f"--- careknot up said:\n{running.log_tail()}\n")
    assert running.returncode == 0
    assert processes_in(settings.namespace) == [], "careknot up left processes behind"


@asynccontextmanager
async def own_namespace(settings: Settings) -> AsyncIterator[Settings]:
    """``settings`` in a namespace of their own, its Postgres schema migrated, and dropped on
    the way out: for a journey whose services act on every row of the record (the devices
    worker watches every home with an ambient sensor), so that it sees only its own, not the
    homes the session's other modules left (a simulated city's two hundred)."""
    own = settings.model_copy(update={"namespace": f"{settings.namespace}x{secrets.token_hex(2)}"})
    async with Database(own) as db:
        await db.migrate()
    try:
        yield own
    finally:
        conn = await asyncpg.connect(own.postgres_dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{own.namespace}" CASCADE')
        finally:
            await conn.close()


async def own_worker_ready(settings: Settings) -> None:
    """Wait for this system's worker: a previous module's worker in the same namespace may have
    left its heartbeat (it lasts 5 s), and only a live worker sets it again."""
    r = aioredis.Redis.from_url(settings.redis_url)
    try:
        await r.delete(*(settings.keys.worker_health(role) for role in ROLES))
    finally:
        await r.aclose()
    await worker_ready(settings, READY_WITHIN_S)
