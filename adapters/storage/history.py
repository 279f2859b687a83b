"""Location history in Postgres: every accepted (and late) fix, and tracks read back as GeoJSON.

Table ``fixes`` (migration 3), keyed by (caregiver_id, ts): a batch is copied into a temporary
staging table with COPY (times as epoch seconds, which Postgres turns into timestamps: cheaper
than making a ``datetime`` of each in Python), then inserted with ``ON CONFLICT DO NOTHING``, so
a batch replayed by Kafka changes nothing. ``live`` tells whether the fix moved the live
position (a late fix did not).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from adapters.storage.postgres import Database, ts
from kernel.contracts import FixEvent
from kernel.errors import StorageError

COLUMNS = (
    "caregiver_id",
    "ts",
    "agency_id",
    "lat",
    "lon",
    "acc",
    "vel",
    "batt",
    "received_at",
    "live",
)
_STAGING = "fixes_staging_epoch"
_CREATE_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (caregiver_id text, ts float8, agency_id text,"
    " lat float8, lon float8, acc real, vel real, batt smallint, received_at float8,"
    " live boolean) ON COMMIT DELETE ROWS"
)
_TIMES = {"ts": "to_timestamp(ts)", "received_at": "to_timestamp(received_at)"}
_MERGE = (
    f"INSERT INTO fixes ({', '.join(COLUMNS)})"
    f" SELECT {', '.join(_TIMES.get(c, c) for c in COLUMNS)} FROM {_STAGING}"
    " ON CONFLICT (caregiver_id, ts) DO NOTHING"
)
_TRACK = (
    "SELECT ts, lat, lon, acc, vel, batt, live FROM fixes"
    " WHERE caregiver_id = $1 AND ts >= $2 AND ts <= $3 ORDER BY ts"
)


def _record(f: FixEvent, live: bool) -> tuple[Any, ...]:
    return (
        f.caregiver_id,
        f.ts,
        f.agency_id,
        f.lat,
        f.lon,
        f.acc,
        f.vel,
        f.batt,
        f.received_at,
        live,
    )


class History:
    """Writes and reads the fixes of one namespace."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, live: Sequence[FixEvent], late: Sequence[FixEvent] = ()) -> int:
        """Keep a batch: ``live`` fixes moved the live position, ``late`` ones did not.

        Returns how many rows were new (a replayed fix is not).
        """
        rows = [_record(f, True) for f in live] + [_record(f, False) for f in late]
        if not rows:
            return 0
        async with self._db.transaction() as conn:
            await conn.execute(_CREATE_STAGING)
            await conn.copy_records_to_table(_STAGING, records=rows, columns=COLUMNS)
            status = await conn.execute(_MERGE)
        return int(status.rsplit(" ", 1)[-1])

    async def track(self, caregiver_id: str, start: float, end: float) -> dict[str, Any]:
        """The caregiver's fixes from ``start`` to ``end`` (epoch s, inclusive) as a GeoJSON
        FeatureCollection: one LineString (a Point for a single fix, nothing for none) whose
        ``times`` property holds each position's epoch seconds."""
        try:
            rows = await self._db.pool.fetch(_TRACK, caregiver_id, ts(start), ts(end))
        except asyncpg.PostgresError as exc:
            raise StorageError(f"cannot read the track of {caregiver_id}: {exc}") from exc
        return track_geojson(caregiver_id, [dict(r) for r in rows])


def track_geojson(caregiver_id: str, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """GeoJSON (RFC 7946: positions are [lon, lat]) of rows ordered by time."""
    if not rows:
        return {"type": "FeatureCollection", "features": []}
    coordinates = [[r["lon"], r["lat"]] for r in rows]
    geometry = (
        {"type": "Point", "coordinates": coordinates[0]}
        if len(rows) == 1
        else {"type": "LineString", "coordinates": coordinates}
    )
    properties = {
        "caregiver_id": caregiver_id,
        "start": _epoch(rows[0]["ts"]),
        "end": _epoch(rows[-1]["ts"]),
        "times": [_epoch(r["ts"]) for r in rows],
        "acc": [r["acc"] for r in rows],
        "live": [r["live"] for r in rows],
    }
    feature = {"type": "Feature", "geometry": geometry, "properties": properties}
    return {"type": "FeatureCollection", "features": [feature]}


def _epoch(at: datetime) -> float:
    return at.astimezone(UTC).timestamp()
