"""The services' Postgres role apart from the schema's owner (``postgres_owner_dsn``), on the real
Postgres: migrations run as the owner, and the services' role, which owns nothing, reads and
writes what the services do but cannot change the event or access log however it asks (not by
UPDATE, DELETE or TRUNCATE, nor by dropping or disabling their triggers), alter a table, create
one in the schema, or mark a migration done."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from adapters.storage.postgres import Database, PatientRow
from kernel.errors import StorageError
from kernel.settings import Settings

pytestmark = pytest.mark.servers


@pytest.fixture
async def services(migrated: Settings) -> AsyncIterator[Settings]:
    """A login role of its own for the services (owning nothing), in a namespace of its own."""
    role, namespace = f"ck_services_{uuid.uuid4().hex[:8]}", f"role{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(migrated.postgres_dsn)
    await owner.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
    at = migrated.postgres_dsn.split("@", 1)[1]
    apart = migrated.model_copy(
        update={
            "namespace": namespace,
            "postgres_dsn": f"postgresql://{role}@{at}",
            "postgres_owner_dsn": migrated.postgres_dsn,
        }
    )
    try:
        yield apart
    finally:
        await owner.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
        await owner.execute(f'DROP OWNED BY "{role}"')
        await owner.execute(f'DROP ROLE "{role}"')
        await owner.close()


REFUSED = (
    "UPDATE events SET kind = 'edited'",
    "DELETE FROM events",
    "TRUNCATE events",
    "UPDATE access_log SET what = 'edited'",
    "DELETE FROM access_log",
    "DROP TRIGGER events_append_only ON events",
    "ALTER TABLE events DISABLE TRIGGER ALL",
    "ALTER TABLE access_log DISABLE TRIGGER access_log_append_only",
    "ALTER TABLE patients ADD COLUMN note text",
    "CREATE TABLE shadow (id int)",
    "INSERT INTO schema_migrations(version) VALUES (999)",
)


async def test_the_services_role_does_its_work_and_cannot_change_the_logs(
    services: Settings,
) -> None:
    async with Database(services) as db:
        applied = await db.migrate()  # as the owner
        assert applied and await db.pool.fetchval("SELECT current_user") != "postgres"
        await db.upsert_agency("role-agency", "Role Care")
        await db.upsert_patients([PatientRow("role-p", "role-agency", "Ada", 53.8, -1.55)])
        assert await db.forget_patient("role-p", "test", time.time())  # adds to the event log
        kept = await db.pool.fetchval(
            "SELECT count(*) FROM events WHERE kind = 'patient_forgotten'"
        )
        assert kept == 1
        refused = []
        for statement in REFUSED:
            try:
                await db.pool.execute(statement)
            except asyncpg.InsufficientPrivilegeError:
                refused.append(statement)
        assert refused == list(REFUSED)
        assert await db.pool.fetchval("SELECT count(*) FROM events") == kept
        assert await db.migrate() == []  # the owner again: nothing to do, nothing lost


async def test_without_an_owner_apart_the_services_migrate_as_before(
    migrated: Settings,
) -> None:
    own = migrated.model_copy(update={"namespace": f"role{uuid.uuid4().hex[:8]}"})
    try:
        async with Database(own) as db:
            assert await db.migrate()
            assert await db.pool.fetchval("SELECT current_user") == "postgres"
    finally:
        owner = await asyncpg.connect(migrated.postgres_dsn)
        await owner.execute(f'DROP SCHEMA IF EXISTS "{own.namespace}" CASCADE')
        await owner.close()


async def test_a_services_role_that_cannot_log_in_is_told(services: Settings) -> None:
    nobody = services.model_copy(
        update={"postgres_dsn": services.postgres_dsn.replace("ck_services_", "ck_nobody_")}
    )
    with pytest.raises(StorageError):
        async with Database(nobody):
            pass
