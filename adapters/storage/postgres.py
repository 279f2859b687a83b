"""Postgres adapter: the record (registry, incidents, offers, append-only events).

Every write that can be replayed is idempotent on its key: incidents on the source event id,
offers on (incident, caregiver), events on ``event_key``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, NamedTuple, TypeAlias, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from adapters.storage.schema import MIGRATIONS
from devices.kinds import KINDS, UNKNOWN_KIND, kind_of
from kernel.errors import RejectedInput, StorageError
from kernel.settings import Settings

log = logging.getLogger(__name__)

Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"
Who: TypeAlias = Literal["caregiver", "device"]
"""Who publishes: a caregiver's phone or a home device."""
_AGENCIES_OF: dict[Who, str] = {
    "caregiver": "SELECT id, agency_id, NULL AS kind FROM caregivers WHERE id = ANY($1::text[])",
    "device": "SELECT id, agency_id, kind FROM devices WHERE id = ANY($1::text[])",
}


class Registered(NamedTuple):
    """What the registry holds of a publisher: its agency, and a device's kind."""

    agency_id: str
    kind: str | None = None


_OWNTRACKS_CAREGIVER = (
    "SELECT d.caregiver_id, c.agency_id FROM owntracks_devices d"
    ' JOIN caregivers c ON c.id = d.caregiver_id WHERE d."user" = $1 AND d.device = $2'
)
LOOKUP_TIMEOUT_S = 5.0
"""How long a registry look-up may take, a connection made again included: ingest holds the
message meanwhile, so a Postgres that hangs is taken for one that is away."""
_CONNECTION_LOST = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a connection that broke during a query, Postgres stopping
)
_UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresError, *_CONNECTION_LOST)
"""What asyncpg and the network raise when Postgres is away, restarting or failing."""
T = TypeVar("T")


def ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


@dataclass(frozen=True, slots=True)
class CaregiverRow:
    id: str
    agency_id: str
    name: str
    skills: tuple[str, ...] = ()


def known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class PatientRow:
    id: str
    agency_id: str
    name: str
    lat: float
    lon: float
    zone: str = "Europe/London"
    """Her home's time zone (IANA): the routines' times of day are local to it."""


@dataclass(frozen=True, slots=True)
class DeviceRow:
    id: str
    agency_id: str
    patient_id: str
    kind: str


@dataclass(frozen=True, slots=True)
class EventRow:
    event_key: str
    agency_id: str
    incident_id: str | None
    kind: str
    actor: str
    at: float
    payload: dict[str, Any]


class Database:
    """A pool on the namespace's schema; ``async with Database(settings) as db``."""

    def __init__(self, settings: Settings, *, max_size: int = 10) -> None:
        self._settings = settings
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None

    async def __aenter__(self) -> Database:
        schema = self._settings.namespace
        try:
            await self._ensure_schema(schema)
            self._pool = await asyncpg.create_pool(
                self._settings.postgres_dsn,
                min_size=1,
                max_size=self._max_size,
                server_settings={"search_path": schema},
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise StorageError(f"cannot connect to Postgres: {exc}") from exc
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def _ensure_schema(self, schema: str) -> None:
        conn = await asyncpg.connect(self._settings.postgres_dsn)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        except asyncpg.UniqueViolationError:
            pass  # created concurrently by another process
        finally:
            await conn.close()

    async def ping(self) -> None:
        """Raises :class:`StorageError` unless Postgres answers."""
        try:
            await self.pool.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageError(f"postgres: no answer to a ping: {exc}") from exc

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageError("database is not open")
        return self._pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """A transaction; Postgres errors inside it come out as :class:`StorageError`."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                yield conn
        except asyncpg.PostgresError as exc:
            raise StorageError(f"transaction failed: {exc}") from exc

    # ------------------------------------------------------------ migrations

    async def migrate(self) -> list[int]:
        """Apply the migrations not yet applied; returns the versions applied now."""
        applied: list[int] = []
        async with self.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(7277001)")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, sql in MIGRATIONS:
                if version not in done:
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations(version) VALUES ($1)", version
                    )
                    applied.append(version)
        return applied

    # ------------------------------------------------------------ registry

    async def upsert_agency(self, agency_id: str, name: str) -> None:
        await self.pool.execute(
            "INSERT INTO agencies(id, name) VALUES ($1, $2)"
            " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name",
            agency_id,
            name,
        )

    async def upsert_caregivers(self, rows: Sequence[CaregiverRow]) -> None:
        await self.pool.executemany(
            "INSERT INTO caregivers(id, agency_id, name, skills) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (id) DO UPDATE SET agency_id = EXCLUDED.agency_id,"
            " name = EXCLUDED.name, skills = EXCLUDED.skills",
            [(r.id, r.agency_id, r.name, list(r.skills)) for r in rows],
        )

    async def upsert_patients(self, rows: Sequence[PatientRow]) -> None:
        """Register patients (again: the new row wins); :class:`RejectedInput` and nothing
        written when a home's time zone is not one the system knows."""
        unknown = sorted({r.zone for r in rows if not known_zone(r.zone)})
        if unknown:
            raise RejectedInput("unknown_zone", f"time zones {unknown} are not IANA zones")
        await self.pool.executemany(
            "INSERT INTO patients(id, agency_id, name, lat, lon, zone)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (id) DO UPDATE SET agency_id = EXCLUDED.agency_id,"
            " name = EXCLUDED.name, lat = EXCLUDED.lat, lon = EXCLUDED.lon, zone = EXCLUDED.zone",
            [(r.id, r.agency_id, r.name, r.lat, r.lon, r.zone) for r in rows],
        )

    async def upsert_devices(self, rows: Sequence[DeviceRow]) -> None:
        """Register devices (again: the new row wins); :class:`RejectedInput` and nothing
        written when one is of a kind the system does not know (``devices.kinds``)."""
        unknown = sorted({r.kind for r in rows if kind_of(r.kind) is None})
        if unknown:
            raise RejectedInput(UNKNOWN_KIND, f"kinds {unknown}; known: {sorted(KINDS)}")
        await self.pool.executemany(
            "INSERT INTO devices(id, agency_id, patient_id, kind) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (id) DO UPDATE SET agency_id = EXCLUDED.agency_id,"
            " patient_id = EXCLUDED.patient_id, kind = EXCLUDED.kind",
            [(r.id, r.agency_id, r.patient_id, r.kind) for r in rows],
        )

    async def device(self, device_id: str) -> DeviceRow | None:
        row = await self.pool.fetchrow(
            "SELECT id, agency_id, patient_id, kind FROM devices WHERE id = $1", device_id
        )
        return DeviceRow(**dict(row)) if row else None

    async def agencies_of(self, who: Who, ids: Sequence[str]) -> dict[str, Registered]:
        """The agency (and a device's kind) of each of ``ids`` that is a registered caregiver
        (or device), in one query; unknown ids are missing from the answer.
        :class:`StorageError` when Postgres does not answer within :data:`LOOKUP_TIMEOUT_S`,
        cannot be reached or fails."""
        query = partial(self.pool.fetch, _AGENCIES_OF[who], list(ids))
        rows = await self._look_up(f"the {who}s {ids[:3]}", query)
        return {row["id"]: Registered(row["agency_id"], row["kind"]) for row in rows}

    async def owntracks_caregiver(self, user: str, device: str) -> tuple[str, str] | None:
        """(caregiver id, agency id) of the OwnTracks phone ``user/device``, or None; errors
        as :meth:`agencies_of`'s."""
        query = partial(self.pool.fetchrow, _OWNTRACKS_CAREGIVER, user, device)
        row = await self._look_up(f"the OwnTracks phone {user}/{device}", query)
        return (row["caregiver_id"], row["agency_id"]) if row else None

    async def _look_up(self, what: str, query: Callable[[], Awaitable[T]]) -> T:
        """``query``'s answer within :data:`LOOKUP_TIMEOUT_S`; its failures as
        :class:`StorageError`. A connection found lost (the pool's, from before Postgres
        restarted) has the pool's connections made anew and the query tried once more."""
        try:
            async with asyncio.timeout(LOOKUP_TIMEOUT_S):
                try:
                    return await query()
                except _CONNECTION_LOST:
                    await self.pool.expire_connections()
                    return await query()
        except _UNAVAILABLE as exc:
            raise StorageError(f"postgres: cannot look up {what}: {exc!r}") from exc

    async def caregiver(self, caregiver_id: str) -> CaregiverRow | None:
        row = await self.pool.fetchrow(
            "SELECT id, agency_id, name, skills FROM caregivers WHERE id = $1", caregiver_id
        )
        if row is None:
            return None
        return CaregiverRow(row["id"], row["agency_id"], row["name"], tuple(row["skills"]))

    async def patient(self, patient_id: str) -> PatientRow | None:
        row = await self.pool.fetchrow(
            "SELECT id, agency_id, name, lat, lon FROM patients WHERE id = $1", patient_id
        )
        return PatientRow(**dict(row)) if row else None

    # ------------------------------------------------------------ events

    async def append_events(self, conn: Conn, events: Sequence[EventRow]) -> None:
        """Append to the event log; a replayed event (same key) is ignored."""
        await conn.executemany(
            "INSERT INTO events(event_key, agency_id, incident_id, kind, actor, at, payload)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) ON CONFLICT (event_key) DO NOTHING",
            [
                (
                    e.event_key,
                    e.agency_id,
                    uuid.UUID(e.incident_id) if e.incident_id else None,
                    e.kind,
                    e.actor,
                    ts(e.at),
                    json.dumps(e.payload),
                )
                for e in events
            ],
        )

    async def incident_events(self, incident_id: str) -> list[EventRow]:
        rows = await self.pool.fetch(
            "SELECT event_key, agency_id, incident_id, kind, actor, at, payload FROM events"
            " WHERE incident_id = $1 ORDER BY seq",
            uuid.UUID(incident_id),
        )
        return [
            EventRow(
                r["event_key"],
                r["agency_id"],
                str(r["incident_id"]),
                r["kind"],
                r["actor"],
                r["at"].timestamp(),
                json.loads(r["payload"]),
            )
            for r in rows
        ]
