"""Visits in Postgres and Redis: fences, the roster, visit records, alerts, tracker states.

Tables (migration 4): ``fences`` (a patient's own radius or GeoJSON polygon; a patient with no
row has a circle of ``DEFAULT_RADIUS_M`` about the home), ``visits`` (the roster and each
visit's record; updates are conditional on ``version``, so two workers cannot both move one
visit) and ``visit_alerts`` (one open row per condition, by ``alert_key``; clearing stamps
``cleared_at``).

Redis: ``{ns}:visits:trackers`` (hash: caregiver -> her ``FenceTracker`` state as JSON, so
arrivals survive a worker restart) and ``{ns}:visits:fences`` (a counter bumped on every fence
change; :class:`FenceCache` reloads when it moves, and every ``reload_s`` in any case, which
also picks up patients registered since).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import asyncpg
import orjson
import redis.asyncio as aioredis

from adapters.storage.postgres import Database, ts
from geofence.fences import Fence, InvalidFence
from geofence.index import FenceIndex
from geofence.transitions import FenceTracker, TrackerConfig
from kernel.errors import RejectedInput
from kernel.settings import Settings
from visits.rules import AlertChange, Evidence, Visit, VisitRecord

log = logging.getLogger(__name__)

RELOAD_S = 10.0
# Lua: set each [caregiver, state] pair of the JSON array ARGV[1] in the trackers' hash KEYS[1]
# (one argument: packing two arguments per tracker in redis-py costs more than the script).
_SAVE_TRACKERS = """
for _, pair in ipairs(cjson.decode(ARGV[1])) do
  redis.call('HSET', KEYS[1], pair[1], pair[2])
end
"""

_VISIT = (
    "SELECT v.id, v.agency_id, v.patient_id, v.caregiver_id, v.service, v.tasks, v.starts_at,"
    " v.ends_at, v.state, v.check_in, v.check_out, v.eta_s, v.alerts, v.told, v.told_eta_s,"
    " v.version, p.lat, p.lon FROM visits v JOIN patients p ON p.id = v.patient_id"
)


@dataclass(frozen=True, slots=True)
class StoredFence:
    """A patient's fence as stored: its signature, and the fence (None: not built again)."""

    signature: str
    fence: Fence | None


@dataclass(frozen=True, slots=True)
class StoredAlert:
    seq: int
    """Its place among the alerts kept (the ``visit_alerts`` id): later alerts, higher."""
    key: str
    kind: str
    agency_id: str
    patient_id: str
    caregiver_id: str
    visit_id: str | None
    raised_at: float
    cleared_at: float | None


ALERT_COLUMNS = (
    "id, alert_key, kind, agency_id, patient_id, caregiver_id, visit_id, raised_at, cleared_at"
)


def stored_alert(r: asyncpg.Record) -> StoredAlert:
    """An alert as read with :data:`ALERT_COLUMNS`."""
    cleared = r["cleared_at"]
    return StoredAlert(
        r["id"], r["alert_key"], r["kind"], r["agency_id"], r["patient_id"], r["caregiver_id"],
        r["visit_id"], r["raised_at"].timestamp(), None if cleared is None else cleared.timestamp(),
    )  # fmt: skip


class VisitStore:
    def __init__(self, db: Database, redis: aioredis.Redis, settings: Settings) -> None:
        self._db, self._redis, self._s = db, redis, settings
        self._save_trackers = redis.register_script(_SAVE_TRACKERS)

    # ------------------------------------------------------------ fences

    async def set_fence(
        self, patient_id: str, *, radius_m: float | None = None, geojson: Any = None
    ) -> Fence:
        """Give a patient's home its own circle radius or polygon (validated first)."""
        patient = await self._db.patient(patient_id)
        if patient is None:
            raise RejectedInput("unknown_patient", patient_id)
        fence = _fence(patient_id, patient.agency_id, patient.lat, patient.lon, radius_m, geojson)
        await self._db.pool.execute(
            "INSERT INTO fences(patient_id, radius_m, geojson, updated_at)"
            " VALUES ($1, $2, $3::jsonb, now()) ON CONFLICT (patient_id) DO UPDATE SET"
            " radius_m = EXCLUDED.radius_m, geojson = EXCLUDED.geojson, updated_at = now()",
            patient_id,
            radius_m,
            None if geojson is None else json.dumps(geojson),
        )
        await self.fences_changed()
        return fence

    async def fences_changed(self) -> None:
        """Tell every :class:`FenceCache` a fence changed (it reloads at its next refresh)."""
        await self._redis.incr(self._s.keys.fence_version())

    async def fences(self, known: Mapping[str, str] | None = None) -> dict[str, StoredFence]:
        """Every patient's fence (id: the patient's), with a signature that changes with it;
        a fence ``known`` (id → signature) has with that signature already is not built again
        (its ``fence`` is None): the cache looks every few seconds."""
        rows = await self._db.pool.fetch(
            "SELECT p.id, p.agency_id, p.lat, p.lon, f.radius_m, f.geojson FROM patients p"
            " LEFT JOIN fences f ON f.patient_id = p.id"
        )
        known = known or {}
        out: dict[str, StoredFence] = {}
        for r in rows:
            signature = f"{r['agency_id']}|{r['lat']}|{r['lon']}|{r['radius_m']}|{r['geojson']}"
            if known.get(r["id"]) == signature:
                out[r["id"]] = StoredFence(signature, None)
                continue
            geojson = None if r["geojson"] is None else json.loads(r["geojson"])
            try:
                fence = _fence(r["id"], r["agency_id"], r["lat"], r["lon"], r["radius_m"], geojson)
            except RejectedInput as exc:
                log.warning("fence of %s unusable (%s): skipped", r["id"], exc)
                continue
            out[r["id"]] = StoredFence(signature, fence)
        return out

    async def fence_version(self) -> int:
        return int(await self._redis.get(self._s.keys.fence_version()) or 0)

    # ------------------------------------------------------------ the roster

    async def add_visits(self, visits: Sequence[Visit]) -> None:
        """Put visits on the roster; a known id gets the new schedule (its record stays)."""
        await self._db.pool.executemany(
            "INSERT INTO visits(id, agency_id, patient_id, caregiver_id, service, tasks,"
            " starts_at, ends_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (id) DO UPDATE SET patient_id = EXCLUDED.patient_id,"
            " caregiver_id = EXCLUDED.caregiver_id, service = EXCLUDED.service,"
            " tasks = EXCLUDED.tasks, starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at",
            [
                (
                    v.visit_id,
                    v.agency_id,
                    v.patient_id,
                    v.caregiver_id,
                    v.service,
                    list(v.tasks),
                    ts(v.start),
                    ts(v.end),
                )
                for v in visits
            ],
        )

    async def record(self, visit_id: str) -> VisitRecord | None:
        row = await self._db.pool.fetchrow(f"{_VISIT} WHERE v.id = $1", visit_id)
        return None if row is None else _record(row)

    async def records_for(
        self, caregiver_ids: Collection[str], now: float, horizon_s: float
    ) -> dict[str, list[VisitRecord]]:
        """The caregivers' visits starting within ``horizon_s`` of now or in progress."""
        rows = await self._db.pool.fetch(
            f"{_VISIT} WHERE v.caregiver_id = ANY($1::text[]) AND v.starts_at <= $2"
            " AND v.ends_at >= $3 ORDER BY v.starts_at, v.id",
            list(caregiver_ids),
            ts(now + horizon_s),
            ts(now - horizon_s),
        )
        out: dict[str, list[VisitRecord]] = {}
        for row in rows:
            out.setdefault(row["caregiver_id"], []).append(_record(row))
        return out

    async def of_patient(self, patient_id: str, start: float, end: float) -> list[VisitRecord]:
        """The patient's visits whose rostered time meets [``start``, ``end``]."""
        rows = await self._db.pool.fetch(
            f"{_VISIT} WHERE v.patient_id = $1 AND v.starts_at <= $3 AND v.ends_at >= $2"
            " ORDER BY v.starts_at, v.id",
            patient_id,
            ts(start),
            ts(end),
        )
        return [_record(r) for r in rows]

    async def active(self, now: float, lookahead_s: float, horizon_s: float) -> list[VisitRecord]:
        """Visits time can still move: not checked in or not yet ``in_visit``."""
        rows = await self._db.pool.fetch(
            f"{_VISIT} WHERE v.state IN ('scheduled', 'en_route', 'arrived')"
            " AND v.starts_at <= $1 AND v.ends_at >= $2 ORDER BY v.starts_at, v.id",
            ts(now + lookahead_s),
            ts(now - horizon_s),
        )
        return [_record(r) for r in rows]

    async def in_period(self, agency_id: str, start: float, end: float) -> list[VisitRecord]:
        rows = await self._db.pool.fetch(
            f"{_VISIT} WHERE v.agency_id = $1 AND v.starts_at >= $2 AND v.starts_at < $3"
            " ORDER BY v.caregiver_id, v.starts_at, v.id",
            agency_id,
            ts(start),
            ts(end),
        )
        return [_record(r) for r in rows]

    async def save(self, records: Iterable[VisitRecord]) -> list[VisitRecord]:
        """Write records read at their ``version``; returns those written (at the new version).
        A record another worker moved meanwhile is not written."""
        saved = []
        async with self._db.transaction() as conn:
            for r in records:
                version = await conn.fetchval(
                    "UPDATE visits SET state = $3, check_in = $4::jsonb, check_out = $5::jsonb,"
                    " eta_s = $6, alerts = $7, told = $8, told_eta_s = $9, needs_review = $10,"
                    " version = version + 1 WHERE id = $1 AND version = $2 RETURNING version",
                    r.visit.visit_id,
                    r.version,
                    r.state,
                    _evidence_json(r.check_in),
                    _evidence_json(r.check_out),
                    r.eta_s,
                    sorted(r.alerts),
                    r.told,
                    r.told_eta_s,
                    r.needs_review,
                )
                if version is not None:
                    saved.append(_with_version(r, version))
        return saved

    # ------------------------------------------------------------ alerts

    async def apply_alerts(self, changes: Sequence[AlertChange]) -> list[AlertChange]:
        """Raise or clear each alert; returns the changes that changed something."""
        done = []
        async with self._db.transaction() as conn:
            for c in changes:
                if c.raised:
                    hit = await conn.fetchval(
                        "INSERT INTO visit_alerts(alert_key, kind, agency_id, patient_id,"
                        " caregiver_id, visit_id, raised_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                        " ON CONFLICT (alert_key) WHERE cleared_at IS NULL DO NOTHING RETURNING id",
                        c.key,
                        c.kind,
                        c.agency_id,
                        c.patient_id,
                        c.caregiver_id,
                        c.visit_id,
                        ts(c.at),
                    )
                else:
                    hit = await conn.fetchval(
                        "UPDATE visit_alerts SET cleared_at = $2 WHERE alert_key = $1"
                        " AND cleared_at IS NULL RETURNING id",
                        c.key,
                        ts(c.at),
                    )
                if hit is not None:
                    done.append(c)
        return done

    async def alerts(self, agency_id: str, *, open_only: bool = False) -> list[StoredAlert]:
        rows = await self._db.pool.fetch(
            f"SELECT {ALERT_COLUMNS} FROM visit_alerts WHERE agency_id = $1"
            " AND (NOT $2 OR cleared_at IS NULL) ORDER BY id",
            agency_id,
            open_only,
        )
        return [stored_alert(r) for r in rows]

    # ------------------------------------------------------------ tracker states (Redis)

    async def trackers(
        self, caregiver_ids: Sequence[str], config: TrackerConfig
    ) -> dict[str, FenceTracker]:
        """Each caregiver's tracker as last saved (a new one if none, or if unreadable)."""
        if not caregiver_ids:
            return {}
        raw = await self._redis.hmget(self._s.keys.visit_trackers(), list(caregiver_ids))
        out = {}
        for cid, value in zip(caregiver_ids, cast(list[bytes | None], raw), strict=True):
            out[cid] = FenceTracker(cid, config)
            if value is not None:
                try:
                    out[cid] = FenceTracker.from_dict(orjson.loads(value), config)
                except ValueError:
                    log.warning("tracker state of %s unreadable: starting afresh", cid)
        return out

    async def save_trackers(self, trackers: Iterable[FenceTracker]) -> None:
        """Save trackers' states, in one script call taking them as one JSON argument."""
        pairs = [(t.caregiver_id, orjson.dumps(t.to_dict()).decode()) for t in trackers]
        if pairs:
            await self._save_trackers(
                keys=[self._s.keys.visit_trackers()], args=[orjson.dumps(pairs)]
            )


class FenceCache:
    """A :class:`FenceIndex` of every fence, kept in step with Postgres: reloaded when the
    fence counter moves or ``reload_s`` has passed; only changed fences are touched."""

    def __init__(
        self,
        store: VisitStore,
        *,
        reload_s: float = RELOAD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.index = FenceIndex()
        self._store, self._reload_s, self._clock = store, reload_s, clock
        self._signatures: dict[str, str] = {}
        self._version: int | None = None
        self._loaded_at = -float("inf")

    async def refresh(self) -> FenceIndex:
        version = await self._store.fence_version()
        if version == self._version and self._clock() - self._loaded_at < self._reload_s:
            return self.index
        self._version, self._loaded_at = version, self._clock()
        stored = await self._store.fences(self._signatures)
        changed = [s.fence for s in stored.values() if s.fence is not None]
        self.index.upsert_many(changed)
        for gone in self._signatures.keys() - stored.keys():
            self.index.remove(gone)
        self._signatures = {fid: s.signature for fid, s in stored.items()}
        if changed:
            log.info("fences: %d changed, %d in all", len(changed), len(self.index))
        return self.index


# ---------------------------------------------------------------- rows


def _fence(
    patient_id: str, agency_id: str, lat: float, lon: float, radius_m: float | None, geojson: Any
) -> Fence:
    """The patient's fence; :class:`RejectedInput` with the fence's reason if it cannot be built."""
    try:
        if geojson is not None:
            return Fence.polygon(patient_id, patient_id, agency_id, geojson)
        if radius_m is None:
            return Fence.circle(patient_id, patient_id, agency_id, lat, lon)
        return Fence.circle(patient_id, patient_id, agency_id, lat, lon, radius_m)
    except InvalidFence as exc:
        raise RejectedInput(exc.reason, exc.detail) from exc


def _record(row: asyncpg.Record) -> VisitRecord:
    visit = Visit(
        row["id"],
        row["agency_id"],
        row["patient_id"],
        row["caregiver_id"],
        row["starts_at"].timestamp(),
        row["ends_at"].timestamp(),
        row["lat"],
        row["lon"],
        tuple(row["tasks"]),
        row["service"],
    )
    return VisitRecord(
        visit,
        row["state"],
        _evidence(row["check_in"]),
        _evidence(row["check_out"]),
        row["eta_s"],
        frozenset(row["alerts"]),
        row["told"],
        row["told_eta_s"],
        row["version"],
    )


def _evidence(value: str | None) -> Evidence | None:
    return None if value is None else Evidence(**json.loads(value))


def _evidence_json(e: Evidence | None) -> str | None:
    if e is None:
        return None
    fields = ("at", "lat", "lon", "acc", "distance_m", "source", "reason", "fix_ts")
    return json.dumps({k: getattr(e, k) for k in fields})


def _with_version(r: VisitRecord, version: int) -> VisitRecord:
    return replace(r, version=version)
