"""Shared fixtures. Each part lives in its own titled section."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import secrets
import sys
import threading
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from adapters.storage.postgres import Database
from careknot.servers import ServerStack
from ingest.service import end_sessions
from kernel.errors import BrokerUnavailable
from kernel.settings import Settings
from tests.support import free_port

# ====================================================================== order
# scripts/test runs the suite on parallel workers (pytest-xdist, a test file whole on one
# worker). The longest files come first, so that no worker starts a long one last while the
# others are done: the journeys, the browser tests, then the adapters against real servers, then
# the pure core.
# Within a tier the order stays as collected.

TIERS = ("journey", "browser", "adapters")


def _tier(item: pytest.Item) -> int:
    parts = item.path.parts
    return next((n for n, tier in enumerate(TIERS) if tier in parts), len(TIERS))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_tier)  # stable


# ====================================================================== hangs
# A test that hangs is ended by pytest-timeout, whose dump shows each thread's stack: an event
# loop waiting on an await that never completes shows only its select(). Shortly before, every
# asyncio task still pending is written out with where it waits, so the report names the await.

HANG_DUMP_BEFORE_S = 15.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    marker = item.get_closest_marker("timeout")
    limit = float(marker.args[0] if marker and marker.args else item.config.getini("timeout") or 0)
    if limit <= HANG_DUMP_BEFORE_S:
        yield
        return
    timer = threading.Timer(limit - HANG_DUMP_BEFORE_S, _dump_pending_tasks, (item.nodeid,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _dump_pending_tasks(nodeid: str) -> None:
    pending = [t for t in gc.get_objects() if isinstance(t, asyncio.Task) and not t.done()]
    out = io.StringIO()
    print(f"\n{nodeid} is about to time out; {len(pending)} asyncio tasks pending:", file=out)
    for task in pending:
        task.print_stack(limit=12, file=out)
    sys.stderr.write(out.getvalue())


# ====================================================================== servers (ServerStack)
# One set of servers per test session: the configured ones where they answer (the development
# machines run Mosquitto, Redis and Postgres), embedded ones otherwise, and always an empty
# tansu. Everything lives in a namespace unique to the session. Each parallel worker is a
# session of its own.


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Resolved settings: URLs of servers that answer, in a fresh per-session namespace, and a
    tansu of the session's own on a free port (sessions at once, parallel workers or two runs on
    one machine, would each start theirs on the configured port where it looks free)."""
    workdir = tmp_path_factory.mktemp("servers")
    settings = Settings(
        namespace=f"t{secrets.token_hex(4)}",
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        token_keys=f"t{secrets.token_hex(2)}:{secrets.token_urlsafe(32)}",  # the session's own
        # one key-encryption key for the session's every process, whatever folder it runs in:
        # patients a module registered are opened by the next module's careknot up
        patient_kek_file=str(workdir / "patient-kek"),
    )
    with ServerStack(settings, workdir, fresh_kafka=True) as resolved:
        yield resolved


@pytest.fixture(scope="session")
async def migrated(stack_settings: Settings) -> AsyncIterator[Settings]:
    """``stack_settings`` with the Postgres schema migrated (once); dropped after the session."""
    async with Database(stack_settings) as db:
        await db.migrate()
    yield stack_settings
    with contextlib.suppress(BrokerUnavailable):
        await end_sessions(stack_settings)  # what the broker would queue for the journeys' ingest
    conn = await asyncpg.connect(stack_settings.postgres_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{stack_settings.namespace}" CASCADE')
    finally:
        await conn.close()
