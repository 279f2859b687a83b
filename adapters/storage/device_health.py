"""Home devices' health in Postgres (migration 10, ``device_health``): what the devices worker
judged of each device it has heard (online, last seen, last heartbeat, battery, tamper, the
drops that count towards flapping), read back whole when a worker starts.

A device never heard has no row: it is not watched (a device not yet installed is not
offline). A row whose device's kind the system does not know is skipped with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from adapters.faults import passing
from adapters.storage.postgres import Database, ts
from devices.health import Health
from devices.kinds import DeviceKind, Severity, kind_of
from kernel.errors import StorageError

log = logging.getLogger(__name__)

_COLUMNS = (
    "online, last_seen, last_heartbeat, changed_at, interval_s, battery, battery_alarm, rssi,"
    " firmware, tamper, flapping, drops"
)
_WATCHED = (
    f"SELECT d.id, d.agency_id, d.patient_id, d.kind, {_COLUMNS}"
    " FROM device_health h JOIN devices d ON d.id = h.device_id"
    " WHERE d.decommissioned_at IS NULL"
)
_SAVE = (
    f"INSERT INTO device_health(device_id, {_COLUMNS}, updated_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now())"
    " ON CONFLICT (device_id) DO UPDATE SET online = EXCLUDED.online,"
    " last_seen = EXCLUDED.last_seen, last_heartbeat = EXCLUDED.last_heartbeat,"
    " changed_at = EXCLUDED.changed_at, interval_s = EXCLUDED.interval_s,"
    " battery = EXCLUDED.battery, battery_alarm = EXCLUDED.battery_alarm,"
    " rssi = COALESCE(EXCLUDED.rssi, device_health.rssi),"
    " firmware = COALESCE(EXCLUDED.firmware, device_health.firmware),"
    " tamper = EXCLUDED.tamper, flapping = EXCLUDED.flapping, drops = EXCLUDED.drops,"
    " updated_at = now()"
)


@dataclass(frozen=True, slots=True)
class Device:
    """A registered device of a kind the system knows."""

    id: str
    agency_id: str
    patient_id: str
    kind: DeviceKind

    @property
    def source(self) -> str:
        """What its alarms are about."""
        return f"device:{self.id}"


@dataclass(frozen=True, slots=True)
class Watched:
    """A device and its health; what it last reported of its signal and firmware."""

    device: Device
    health: Health
    rssi: float | None = None
    firmware: str | None = None


class DeviceHealthStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def device(self, device_id: str) -> Device | None:
        """The registered device, or None (unregistered, decommissioned, or of a kind the system
        does not know)."""
        row = await self._db.device(device_id)
        if row is None or row.decommissioned:
            return None
        kind = kind_of(row.kind)
        if kind is None:
            log.warning("device %s is of a kind not known: %r", device_id, row.kind)
            return None
        return Device(row.id, row.agency_id, row.patient_id, kind)

    async def watched(self) -> list[Watched]:
        """Every device heard so far, with its health as last saved."""
        watched = []
        for row in await self._db.pool.fetch(_WATCHED):
            kind = kind_of(row["kind"])
            if kind is None:
                log.warning("device %s is of a kind not known: %r", row["id"], row["kind"])
                continue
            device = Device(row["id"], row["agency_id"], row["patient_id"], kind)
            watched.append(Watched(device, _health(kind, row), row["rssi"], row["firmware"]))
        return watched

    async def decommissioned(self, device_ids: Sequence[str]) -> set[str]:
        """Those of ``device_ids`` taken out of service; :class:`StorageError` when Postgres is
        away (``adapters.faults``), any other failure raised as it is."""
        try:
            rows = await self._db.pool.fetch(
                "SELECT id FROM devices WHERE id = ANY($1::text[])"
                " AND decommissioned_at IS NOT NULL",
                list(device_ids),
            )
        except Exception as exc:
            if not passing(exc):
                raise
            raise StorageError(f"postgres: cannot read devices decommissioned: {exc!r}") from exc
        return {r["id"] for r in rows}

    async def save(self, watched: Sequence[Watched]) -> None:
        """Write each device's health (its last reported signal and firmware kept when it
        reported none), in one round trip; :class:`StorageError` when Postgres is away
        (``adapters.faults``), any other failure raised as it is."""
        if not watched:
            return
        try:
            await self._db.pool.executemany(_SAVE, [_row(w) for w in watched])
        except Exception as exc:
            if not passing(exc):
                raise
            raise StorageError(f"postgres: cannot save device health: {exc!r}") from exc


def _health(kind: DeviceKind, row: Any) -> Health:
    return Health(
        kind=kind,
        online=row["online"],
        last_seen=row["last_seen"].timestamp(),
        changed_at=row["changed_at"].timestamp(),
        interval_s=row["interval_s"],
        last_heartbeat=_epoch(row["last_heartbeat"]),
        battery=row["battery"],
        battery_alarm=cast(Severity | None, row["battery_alarm"]),
        tamper=row["tamper"],
        flapping=row["flapping"],
        drops=tuple(row["drops"]),
    )


def _row(w: Watched) -> tuple[object, ...]:
    h = w.health
    beat = None if h.last_heartbeat is None else ts(h.last_heartbeat)
    return (
        w.device.id,
        h.online,
        ts(h.last_seen),
        beat,
        ts(h.changed_at),
        h.interval_s,
        h.battery,
        h.battery_alarm,
        w.rssi,
        w.firmware,
        h.tamper,
        h.flapping,
        list(h.drops),
    )


def _epoch(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()
