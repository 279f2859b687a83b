"""Shared fixtures. Each part lives in its own titled section."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from adapters.storage.postgres import Database
from careknot.servers import ServerStack
from ingest.service import end_sessions
from kernel.errors import BrokerUnavailable
from kernel.settings import Settings

# ====================================================================== servers (ServerStack)
# One set of servers per test session: the configured ones where they answer (the development
# machines run Mosquitto, Redis and Postgres), embedded ones otherwise, and always an empty
# tansu. Everything lives in a namespace unique to the session.


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Resolved settings: URLs of servers that answer, in a fresh per-session namespace."""
    settings = Settings(namespace=f"t{secrets.token_hex(4)}")
    workdir = tmp_path_factory.mktemp("servers")
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
