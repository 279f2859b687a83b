"""Vitals in Postgres (migration 9): the recent raw samples, minute aggregates kept, and each
patient's own thresholds.

- ``vitals_raw``: every sample the worker took, as the device sent it, keyed by (device, time)
  so a sample Kafka delivers again is kept once; ``dropped`` names the measures the filter
  judged artefacts. A batch is copied into a staging table with COPY and inserted with ``ON
  CONFLICT DO NOTHING``; the rows new to the table come back, and only their kept values are
  added to the minute aggregates, so a batch replayed adds nothing twice. Kept
  :data:`RAW_WINDOW_S` (:meth:`VitalsStore.prune`).
- ``vitals_minutes``: per patient, measure and minute, the lowest, highest, sum and count of
  the kept values (``vitals.downsample``), merged as batches come.
- ``vitals_thresholds``: a patient's rules over the defaults (``vitals.thresholds``), one per
  kind, or a kind turned off.

A series reads the raw samples where they are kept and the minutes before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from adapters.storage.postgres import Database, ts
from kernel.errors import StorageError
from vitals.downsample import minute_of
from vitals.measures import MEASURES, Measure
from vitals.thresholds import Threshold

RAW_WINDOW_S = 24 * 3600.0
"""How long raw samples are kept; a series reads minutes beyond."""
"""Raw rows deleted per statement when pruning, so no statement holds locks for long."""

_RAW = ("device_id", "ts", "patient_id", *MEASURES, "dropped")
_RAW_STAGING = "vitals_raw_staging"
_CREATE_RAW_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_RAW_STAGING} (device_id text, ts float8,"
    " patient_id text, hr real, spo2 real, temp real, bp_sys real, bp_dia real,"
    " dropped text[]) ON COMMIT DELETE ROWS"
)
_MINUTE = "to_timestamp(floor(extract(epoch FROM new.ts) / 60) * 60)"
_EACH_MEASURE = ", ".join(f"('{m}', new.{m})" for m in MEASURES)
_KEEP = f"""
WITH new AS (
    INSERT INTO vitals_raw ({", ".join(_RAW)})
    SELECT device_id, to_timestamp(ts), patient_id, {", ".join(MEASURES)}, dropped
    FROM {_RAW_STAGING}
    ON CONFLICT (device_id, ts) DO NOTHING
    RETURNING patient_id, ts, {", ".join(MEASURES)}, dropped
), kept AS (
    SELECT new.patient_id, v.measure, {_MINUTE} AS minute, v.value::float8 AS value
    FROM new CROSS JOIN LATERAL (VALUES {_EACH_MEASURE}) AS v(measure, value)
    WHERE v.value IS NOT NULL AND NOT (v.measure = ANY(new.dropped))
), merged AS (
    INSERT INTO vitals_minutes (patient_id, measure, minute, low, high, total, count)
    SELECT patient_id, measure, minute, min(value), max(value), sum(value), count(*)
    FROM kept GROUP BY patient_id, measure, minute ORDER BY patient_id, measure, minute
    ON CONFLICT (patient_id, measure, minute) DO UPDATE SET
        low = least(vitals_minutes.low, EXCLUDED.low),
        high = greatest(vitals_minutes.high, EXCLUDED.high),
        total = vitals_minutes.total + EXCLUDED.total,
        count = vitals_minutes.count + EXCLUDED.count
    RETURNING 1
)
SELECT (SELECT count(*) FROM new) AS new, (SELECT count(*) FROM merged) AS minutes
"""
"""The batch's new raw samples inserted and their kept values added to the minute aggregates
(the lowest, the highest, the sum and the count per patient, measure and minute, so a minute
written in several batches adds up), in one statement: Postgres aggregates in C what Python
would have read back row by row."""
_THRESHOLD = (
    "patient_id",
    "kind",
    "enabled",
    "measure",
    "direction",
    "threshold",
    "hold_s",
    "clear_at",
    "clear_hold_s",
    "severity",
)


@dataclass(frozen=True, slots=True)
class RawVital:
    """A sample to keep: its device and patient, when it was taken, the values it carried and
    the measures the filter dropped."""

    device_id: str
    patient_id: str
    ts: float
    values: Mapping[Measure, float]
    dropped: tuple[Measure, ...] = ()


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One point of a series: a raw value (``count`` 1, low = high = mean) or a minute."""

    at: float
    mean: float
    low: float
    high: float
    count: int


@dataclass(frozen=True, slots=True)
class DevicePatient:
    agency_id: str
    patient_id: str


def _staged(v: RawVital) -> tuple[Any, ...]:
    return (v.device_id, v.ts, v.patient_id, *(v.values.get(m) for m in MEASURES), list(v.dropped))


class VitalsStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, samples: Sequence[RawVital]) -> int:
        """Keep a batch of samples and add the kept values of those new to the minute
        aggregates, in one transaction; how many were new (a sample kept already is not)."""
        if not samples:
            return 0
        async with self._db.transaction() as conn:
            await conn.execute(_CREATE_RAW_STAGING)
            records = [_staged(v) for v in samples]
            await conn.copy_records_to_table(_RAW_STAGING, records=records, columns=_RAW)
            new = await conn.fetchval(_KEEP)
        return int(new)

    async def series(
        self, patient_id: str, measure: Measure, start: float, end: float, *, now: float
    ) -> list[SeriesPoint]:
        """A patient's ``measure`` from ``start`` to ``end`` (epoch s, inclusive), in time
        order: the kept raw values where raw samples are kept (from a minute's start), the
        minute aggregates before."""
        if measure not in MEASURES:
            raise ValueError(f"no measure {measure!r}")
        boundary = minute_of(now - RAW_WINDOW_S) + 60  # raw samples are whole from here
        raw_from = max(start, boundary)
        try:
            minutes = (
                []
                if start >= boundary
                else await self._minutes(patient_id, measure, minute_of(start), min(boundary, end))
            )
            raw = await self._db.pool.fetch(
                f"SELECT extract(epoch FROM ts) AS at, {measure} AS value FROM vitals_raw"
                f" WHERE patient_id = $1 AND ts >= $2 AND ts <= $3 AND {measure} IS NOT NULL"
                " AND NOT ($4 = ANY(dropped)) ORDER BY ts",
                patient_id,
                ts(raw_from),
                ts(end),
                measure,
            )
        except asyncpg.PostgresError as exc:
            raise StorageError(f"cannot read the vitals of {patient_id}: {exc}") from exc
        return [_minute_point(r) for r in minutes] + [_raw_point(r) for r in raw]

    async def _minutes(
        self, patient_id: str, measure: Measure, start: float, end: float
    ) -> list[asyncpg.Record]:
        return await self._db.pool.fetch(
            "SELECT extract(epoch FROM minute) AS at, low, high, total, count"
            " FROM vitals_minutes WHERE patient_id = $1 AND measure = $2"
            " AND minute >= $3 AND minute < $4 ORDER BY minute",
            patient_id,
            measure,
            ts(start),
            ts(end),
        )

    async def count_samples(self, patient_ids: Sequence[str] | None = None) -> int:
        """How many raw samples are kept (of these patients' only, when given)."""
        if patient_ids is None:
            return int(await self._db.pool.fetchval("SELECT count(*) FROM vitals_raw"))
        query = "SELECT count(*) FROM vitals_raw WHERE patient_id = ANY($1::text[])"
        return int(await self._db.pool.fetchval(query, list(patient_ids)))

    async def prune(self, before: float) -> int:
        """Forget raw samples taken before ``before`` (their minutes stay); how many."""
        return await self._db.delete_older("vitals_raw", before)

    # ------------------------------------------------------------ devices and thresholds

    async def patients_of(self, device_ids: Sequence[str]) -> dict[str, DevicePatient]:
        """The agency and patient of each registered device among ``device_ids`` (not
        decommissioned)."""
        rows = await self._db.pool.fetch(
            "SELECT id, agency_id, patient_id FROM devices WHERE id = ANY($1::text[])"
            " AND decommissioned_at IS NULL",
            list(device_ids),
        )
        return {r["id"]: DevicePatient(r["agency_id"], r["patient_id"]) for r in rows}

    async def set_threshold(self, patient_id: str, kind: str, rule: Threshold | None) -> None:
        """A patient's own rule for ``kind`` (None: that kind is off for her)."""
        if rule is not None and rule.kind != kind:
            raise ValueError(f"a rule of kind {rule.kind!r} set as {kind!r}")
        enabled = rule is not None
        rule = rule or Threshold(kind, "hr", "above", 0.0, 0.0, 0.0)  # what an off row holds
        await self._db.pool.execute(
            f"INSERT INTO vitals_thresholds ({', '.join(_THRESHOLD)})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " ON CONFLICT (patient_id, kind) DO UPDATE SET enabled = EXCLUDED.enabled,"
            " measure = EXCLUDED.measure, direction = EXCLUDED.direction,"
            " threshold = EXCLUDED.threshold, hold_s = EXCLUDED.hold_s,"
            " clear_at = EXCLUDED.clear_at, clear_hold_s = EXCLUDED.clear_hold_s,"
            " severity = EXCLUDED.severity",
            patient_id,
            kind,
            enabled,
            rule.measure,
            rule.direction,
            rule.limit,
            rule.hold_s,
            rule.clear_at,
            rule.clear_hold_s,
            rule.severity,
        )

    async def thresholds(
        self, patient_ids: Sequence[str]
    ) -> dict[str, dict[str, Threshold | None]]:
        """Each patient's own rules by kind (None: a kind she has turned off); a patient with
        none of her own is not in the answer."""
        rows = await self._db.pool.fetch(
            f"SELECT {', '.join(_THRESHOLD)} FROM vitals_thresholds"
            " WHERE patient_id = ANY($1::text[])",
            list(patient_ids),
        )
        out: dict[str, dict[str, Threshold | None]] = {}
        for r in rows:
            out.setdefault(r["patient_id"], {})[r["kind"]] = _threshold(r)
        return out


def _threshold(r: asyncpg.Record) -> Threshold | None:
    if not r["enabled"]:
        return None
    return Threshold(
        r["kind"],
        r["measure"],
        r["direction"],
        r["threshold"],
        r["hold_s"],
        clear_at=r["clear_at"],
        clear_hold_s=r["clear_hold_s"],
        severity=r["severity"],
    )


def _minute_point(r: asyncpg.Record) -> SeriesPoint:
    return SeriesPoint(float(r["at"]), r["total"] / r["count"], r["low"], r["high"], r["count"])


def _raw_point(r: asyncpg.Record) -> SeriesPoint:
    value = float(r["value"])
    return SeriesPoint(float(r["at"]), value, value, value, 1)
