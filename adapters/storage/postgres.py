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
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeAlias, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from pydantic import ValidationError

from adapters.key_file import LocalKeyFile
from adapters.storage.schema import MIGRATIONS
from devices.kinds import KINDS, UNKNOWN_KIND, kind_of
from kernel import sealing
from kernel.contracts import PatientDetails
from kernel.errors import RejectedInput, StorageError
from kernel.sealing import FORGOTTEN, UNREADABLE, KeyWrapper, Unsealable
from kernel.settings import Settings

log = logging.getLogger(__name__)

Conn: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"
Who: TypeAlias = Literal["caregiver", "device"]
"""Who publishes: a caregiver's phone or a home device."""
_AGENCIES_OF: dict[Who, str] = {
    "caregiver": "SELECT id, agency_id, NULL AS kind FROM caregivers WHERE id = ANY($1::text[])",
    "device": "SELECT id, agency_id, kind FROM devices"
    " WHERE id = ANY($1::text[]) AND decommissioned_at IS NULL",
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


DELETE_CHUNK = 50_000
APPEND_ONLY = ("events", "access_log")
"""The logs the services add to and never change (their triggers refuse it, whoever asks)."""
SERVICES_GRANTS = (
    'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"',
    'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"',
    'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"',
    *(
        f'REVOKE UPDATE, DELETE, TRUNCATE ON "{{schema}}".{table} FROM "{{role}}"'
        for table in APPEND_ONLY
    ),
    'REVOKE INSERT, UPDATE, DELETE ON "{schema}".schema_migrations FROM "{role}"',
)
"""What the services' role is granted on the namespace's schema where it is not its owner:
reading and writing the tables, only adding to the event and access logs, not migrating; as a
role that owns nothing, it can change no table and drop no trigger."""

_PATIENT_SELECT = (
    "SELECT p.id, p.agency_id, p.name_sealed, p.details_sealed, p.lat, p.lon, p.zone,"
    " p.forgotten_at,"
    " k.wrapped, k.kek_id FROM patients p LEFT JOIN patient_keys k ON k.patient_id = p.id"
)


@dataclass(frozen=True, slots=True)
class PatientRow:
    id: str
    agency_id: str
    name: str
    lat: float
    lon: float
    zone: str = "Europe/London"
    """Her home's time zone (IANA): the routines' times of day are local to it."""
    forgotten: bool = False
    """Her data key deleted (``careknot patient forget``): her name reads :data:`FORGOTTEN`."""
    details: PatientDetails | None = None
    """Her address, how to get in, notes and family, sealed as one value (None: none kept,
    forgotten, or they do not open)."""


@dataclass(frozen=True, slots=True)
class DeviceRow:
    id: str
    agency_id: str
    patient_id: str
    kind: str
    decommissioned: bool = False
    """Taken out of service: its publishes are refused and its health no longer watched; its
    id is not given to another device (its history is its own)."""


@dataclass(frozen=True, slots=True)
class EventRow:
    event_key: str
    agency_id: str
    incident_id: str | None
    kind: str
    actor: str
    at: float
    payload: dict[str, Any]


NAME = "name"
"""The sealed field of ``patients`` (``name_sealed``): the associated data names it."""
DETAILS = "details"
"""Her :class:`~kernel.contracts.PatientDetails`, sealed as one JSON value (``details_sealed``)."""


class Database:
    """A pool on the namespace's schema; ``async with Database(settings) as db``.

    Patients' names are sealed (``kernel.sealing``) under a data key of each patient's own,
    kept wrapped by ``kek`` (default: the local key file ``patient_kek_file``, read when a
    name is first sealed or opened)."""

    def __init__(
        self, settings: Settings, *, max_size: int = 10, kek: KeyWrapper | None = None
    ) -> None:
        self._settings = settings
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._kek = kek

    @property
    def kek(self) -> KeyWrapper:
        """The key-encryption key of patients' data keys."""
        if self._kek is None:
            self._kek = LocalKeyFile(Path(self._settings.patient_kek_file))
        return self._kek

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
        """The namespace's schema, made by its owner where one is named (the services' role
        may not create one, and need not: it is there once migrated)."""
        conn = await asyncpg.connect(self._owner_dsn)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        except asyncpg.UniqueViolationError:
            pass  # created concurrently by another process
        finally:
            await conn.close()

    @property
    def _owner_dsn(self) -> str:
        return self._settings.postgres_owner_dsn or self._settings.postgres_dsn

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
        """Apply the migrations not yet applied, as the schema's owner; returns the versions
        applied now. Where the services' role is another (``postgres_owner_dsn``), it is then
        granted what the services do (:data:`SERVICES_GRANTS`)."""
        applied: list[int] = []
        owner = await asyncpg.connect(
            self._owner_dsn, server_settings={"search_path": self._settings.namespace}
        )
        try:
            async with owner.transaction():
                await owner.execute("SELECT pg_advisory_xact_lock(7277001)")
                await owner.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                rows = await owner.fetch("SELECT version FROM schema_migrations")
                done = {r["version"] for r in rows}
                for version, sql in MIGRATIONS:
                    if version not in done:
                        await owner.execute(sql)
                        await owner.execute(
                            "INSERT INTO schema_migrations(version) VALUES ($1)", version
                        )
                        applied.append(version)
                await self._seal_clear_names(owner)  # type: ignore[arg-type]
                await self._grant_services(owner)
        except asyncpg.PostgresError as exc:
            raise StorageError(f"migrating failed: {exc}") from exc
        finally:
            await owner.close()
        return applied

    async def _grant_services(self, owner: asyncpg.Connection) -> None:
        """The services' role, where it is not the owner: what the services do, nothing more."""
        services = await self.pool.fetchval("SELECT current_user")
        if services == await owner.fetchval("SELECT current_user"):
            return
        schema = self._settings.namespace
        for statement in SERVICES_GRANTS:
            await owner.execute(statement.format(schema=schema, role=services))

    async def _seal_clear_names(self, conn: Conn) -> None:
        """Seal the names registered before they were sealed (migration 14)."""
        rows = await conn.fetch("SELECT id, name FROM patients WHERE name IS NOT NULL")
        if not rows:
            return
        data_keys = await self._data_keys(conn, [r["id"] for r in rows])
        await conn.executemany(
            "UPDATE patients SET name = NULL, name_sealed = $2 WHERE id = $1",
            [
                (r["id"], sealing.seal(data_keys[r["id"]], r["id"], NAME, r["name"]))
                for r in rows
                if r["id"] in data_keys
            ],
        )
        log.info("sealed the names of %d patients registered before sealing", len(rows))

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
        if not rows:
            return
        ids = [r.id for r in rows]
        async with self.transaction() as conn:
            data_keys = await self._data_keys(conn, ids)
            await conn.executemany(
                "INSERT INTO patients(id, agency_id, name_sealed, details_sealed, lat, lon, zone)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (id) DO UPDATE SET agency_id = EXCLUDED.agency_id,"
                " lat = EXCLUDED.lat, lon = EXCLUDED.lon, zone = EXCLUDED.zone,"
                " name_sealed = CASE WHEN patients.forgotten_at IS NULL"
                " THEN EXCLUDED.name_sealed ELSE patients.name_sealed END,"
                " details_sealed = CASE WHEN patients.forgotten_at IS NULL"
                " THEN EXCLUDED.details_sealed ELSE patients.details_sealed END",
                [
                    (r.id, r.agency_id, *self._sealed(data_keys, r), r.lat, r.lon, r.zone)
                    for r in rows
                ],
            )
            # a key made while she was being forgotten goes with her
            await conn.execute(
                "DELETE FROM patient_keys k USING patients p WHERE p.id = k.patient_id"
                " AND p.forgotten_at IS NOT NULL AND k.patient_id = ANY($1::text[])",
                ids,
            )

    @staticmethod
    def _sealed(data_keys: dict[str, bytes], row: PatientRow) -> tuple[bytes | None, bytes | None]:
        """Her name and her details, each sealed under her data key (None: no key, or no
        details)."""
        key = data_keys.get(row.id)
        if key is None:
            return None, None
        name = sealing.seal(key, row.id, NAME, row.name)
        if row.details is None:
            return name, None
        return name, sealing.seal(key, row.id, DETAILS, row.details.model_dump_json())

    async def _data_keys(self, conn: Conn, ids: Sequence[str]) -> dict[str, bytes]:
        """The data keys of these patients, unwrapped; a key is made for each who has none
        and is not forgotten (a forgotten patient has none, ever again). Two processes
        registering one patient at once keep the key stored first."""
        query = (
            "SELECT patient_id, wrapped, kek_id FROM patient_keys"
            " WHERE patient_id = ANY($1::text[])"
        )
        stored = {r["patient_id"]: r for r in await conn.fetch(query, list(ids))}
        forgotten = {
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM patients WHERE id = ANY($1::text[]) AND forgotten_at IS NOT NULL",
                list(ids),
            )
        }
        new = [i for i in dict.fromkeys(ids) if i not in stored and i not in forgotten]
        if new:
            kek = self.kek
            await conn.executemany(
                "INSERT INTO patient_keys(patient_id, wrapped, kek_id) VALUES ($1, $2, $3)"
                " ON CONFLICT (patient_id) DO NOTHING",
                [(i, kek.wrap(sealing.new_data_key(), i), kek.kek_id) for i in new],
            )
            stored.update({r["patient_id"]: r for r in await conn.fetch(query, new)})
        return {
            i: self.kek.unwrap(r["wrapped"], r["kek_id"], i)
            for i, r in stored.items()
            if i not in forgotten
        }

    async def forget_patient(self, patient_id: str, actor: str, now: float) -> bool:
        """Crypto-shredding: delete the patient's data key, so her sealed fields can never be
        read again (they read :data:`kernel.sealing.FORGOTTEN`), and record it in the event
        log; her incidents, devices and home stay. False when there is no such patient."""
        async with self.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT agency_id FROM patients WHERE id = $1 FOR UPDATE", patient_id
            )
            if row is None:
                return False
            await conn.execute("DELETE FROM patient_keys WHERE patient_id = $1", patient_id)
            await conn.execute(
                "UPDATE patients SET forgotten_at = coalesce(forgotten_at, $2) WHERE id = $1",
                patient_id,
                ts(now),
            )
            event = EventRow(
                f"patient_forgotten:{patient_id}",
                row["agency_id"],
                None,
                "patient_forgotten",
                actor,
                now,
                {"patient_id": patient_id},
            )
            await self.append_events(conn, [event])
        log.info("patient %s forgotten: her data key is deleted", patient_id)
        return True

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
            "SELECT id, agency_id, patient_id, kind, decommissioned_at IS NOT NULL AS"
            " decommissioned FROM devices WHERE id = $1",
            device_id,
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
        """A patient as registered, her name unsealed (:data:`kernel.sealing.FORGOTTEN` once
        she is forgotten, :data:`kernel.sealing.UNREADABLE` if it does not open)."""
        row = await self.pool.fetchrow(f"{_PATIENT_SELECT} WHERE p.id = $1", patient_id)
        return None if row is None else self._patient_of(row)

    async def patients_of(self, agency_id: str, limit: int, after: str = "") -> list[PatientRow]:
        """A page of the agency's patients (ids after ``after``, in id order), names unsealed."""
        rows = await self.pool.fetch(
            f"{_PATIENT_SELECT} WHERE p.agency_id = $1 AND p.id > $2 ORDER BY p.id LIMIT $3",
            agency_id,
            after,
            limit,
        )
        return [self._patient_of(r) for r in rows]

    def _patient_of(self, row: asyncpg.Record) -> PatientRow:
        forgotten = row["forgotten_at"] is not None
        key = None if forgotten else self._key_of(row)
        return PatientRow(
            row["id"],
            row["agency_id"],
            FORGOTTEN if forgotten else self._name_of(row, key),
            row["lat"],
            row["lon"],
            row["zone"],
            forgotten,
            None if key is None else self._details_of(row, key),
        )

    def _key_of(self, row: asyncpg.Record) -> bytes | None:
        """Her data key, unwrapped; None when she has none or it does not open."""
        if row["wrapped"] is None:
            return None
        try:
            return self.kek.unwrap(row["wrapped"], row["kek_id"], row["id"])
        except Unsealable as exc:
            log.error("patient %s: her data key does not open: %s", row["id"], exc)
            return None

    def _name_of(self, row: asyncpg.Record, key: bytes | None) -> str:
        if row["wrapped"] is None or row["name_sealed"] is None:
            return FORGOTTEN
        if key is None:
            return UNREADABLE
        try:
            return sealing.unseal(key, row["id"], NAME, row["name_sealed"])
        except Unsealable as exc:
            log.error("patient %s: her name does not open: %s", row["id"], exc)
            return UNREADABLE

    def _details_of(self, row: asyncpg.Record, key: bytes) -> PatientDetails | None:
        if row["details_sealed"] is None:
            return None
        try:
            opened = sealing.unseal(key, row["id"], DETAILS, row["details_sealed"])
            return PatientDetails.model_validate_json(opened)
        except (Unsealable, ValidationError) as exc:
            log.error("patient %s: her details do not open: %s", row["id"], type(exc).__name__)
            return None

    # ------------------------------------------------------------ events

    async def delete_older(self, table: Literal["fixes", "vitals_raw"], before: float) -> int:
        """Delete the rows of ``table`` whose ``ts`` is before ``before``, in chunks of
        :data:`DELETE_CHUNK`, so that no one statement holds the table long; how many."""
        gone = 0
        while True:
            status = await self.pool.execute(
                f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
                f" SELECT ctid FROM {table} WHERE ts < $1 LIMIT $2))",
                ts(before),
                DELETE_CHUNK,
            )
            deleted = int(status.rsplit(" ", 1)[-1])
            gone += deleted
            if deleted < DELETE_CHUNK:
                return gone

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
