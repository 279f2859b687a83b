"""Each home's routine in Postgres (migration 12): the homes to watch, their ambient events as
the models read them, the models' versions with the data window each saw, the drifts over days
found for care review, and the routine alarms' episodes (each detection that raised or repeated
an alarm, whether it asked for an incident, and a dispatcher's label on it: ``false_alarm``).

A model version is kept with its params (JSON) and arrays (``.npz``, read without pickle:
``routines.persist``); the last :data:`KEEP_VERSIONS` of a home are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from adapters.storage.postgres import Database, ts
from kernel.contracts import ACTIVITY_EVENT_TYPES

AMBIENT_KINDS = ("motion_sensor", "door_sensor", "bed_sensor", "chair_sensor")
"""Device kinds whose events tell a resident's routine: a home with one of them is watched."""
KEEP_VERSIONS = 14


@dataclass(frozen=True, slots=True)
class WatchedHome:
    patient_id: str
    agency_id: str
    zone: str


@dataclass(frozen=True, slots=True)
class AmbientEvent:
    event_id: str
    patient_id: str
    ts: float
    type: str
    room: object
    """What the event said (``data.room``), unchecked."""
    device_kind: str | None


@dataclass(frozen=True, slots=True)
class StoredModel:
    patient_id: str
    version: int
    model: str
    trained_at: float
    window_from: float
    window_to: float
    days: int
    events: int
    false_alarms: int
    params: dict[str, Any]
    arrays: bytes


@dataclass(frozen=True, slots=True)
class Episode:
    """A routine alarm's episode: the detection that raised (or repeated) it."""

    alarm_id: str
    patient_id: str
    kind: str
    start: float
    raised_at: float
    explanation: str
    incident_asked: bool
    label: str | None


_EPISODE = (
    "SELECT r.alarm_id, r.patient_id, r.kind, r.start, r.raised_at, r.explanation,"
    " r.incident_asked_at IS NOT NULL AS incident_asked, r.label FROM routine_detections r"
)


def _episode(r: Any) -> Episode:
    return Episode(
        r["alarm_id"],
        r["patient_id"],
        r["kind"],
        r["start"].timestamp(),
        r["raised_at"].timestamp(),
        r["explanation"],
        r["incident_asked"],
        r["label"],
    )


class RoutineStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------ homes and their events

    async def homes(self) -> list[WatchedHome]:
        """Every patient whose home has an ambient sensor."""
        rows = await self._db.pool.fetch(
            "SELECT p.id, p.agency_id, p.zone FROM patients p WHERE EXISTS"
            " (SELECT 1 FROM devices d WHERE d.patient_id = p.id AND d.kind = ANY($1::text[])"
            " AND d.decommissioned_at IS NULL)"
            " ORDER BY p.id",
            list(AMBIENT_KINDS),
        )
        return [WatchedHome(r["id"], r["agency_id"], r["zone"]) for r in rows]

    async def device_kinds(self, device_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Each registered device's patient and kind."""
        rows = await self._db.pool.fetch(
            "SELECT id, patient_id, kind FROM devices WHERE id = ANY($1::text[])"
            " AND decommissioned_at IS NULL",
            list(device_ids),
        )
        return {r["id"]: (r["patient_id"], r["kind"]) for r in rows}

    async def activity(
        self, patient_ids: Sequence[str], since: float, until: float
    ) -> list[AmbientEvent]:
        """The homes' ambient events in [``since``, ``until``), in time order."""
        rows = await self._db.pool.fetch(
            "SELECT e.event_id, e.patient_id, e.ts, e.type, e.data->'room' AS room, d.kind"
            " FROM device_events e LEFT JOIN devices d ON d.id = e.device_id"
            " WHERE e.patient_id = ANY($1::text[]) AND e.ts >= $2 AND e.ts < $3"
            " AND e.type = ANY($4::text[]) ORDER BY e.ts, e.event_id",
            list(patient_ids),
            ts(since),
            ts(until),
            sorted(ACTIVITY_EVENT_TYPES),
        )
        return [
            AmbientEvent(
                r["event_id"],
                r["patient_id"],
                r["ts"].timestamp(),
                r["type"],
                None if r["room"] is None else orjson.loads(r["room"]),
                r["kind"],
            )
            for r in rows
        ]

    # ------------------------------------------------------------ models and their versions

    async def latest_models(self, patient_ids: Sequence[str]) -> dict[str, StoredModel]:
        rows = await self._db.pool.fetch(
            "SELECT DISTINCT ON (patient_id) * FROM routine_models"
            " WHERE patient_id = ANY($1::text[]) ORDER BY patient_id, version DESC",
            list(patient_ids),
        )
        return {r["patient_id"]: _model(r) for r in rows}

    async def versions(self, patient_id: str) -> list[StoredModel]:
        """A home's kept model versions, the newest first."""
        rows = await self._db.pool.fetch(
            "SELECT * FROM routine_models WHERE patient_id = $1 ORDER BY version DESC",
            patient_id,
        )
        return [_model(r) for r in rows]

    async def save_model(
        self,
        patient_id: str,
        model: str,
        trained_at: float,
        window: tuple[float, float],
        days: int,
        events: int,
        false_alarms: int,
        params: dict[str, Any],
        arrays: bytes,
    ) -> int:
        """Keep a new version of the home's model; its number. Versions beyond the last
        :data:`KEEP_VERSIONS` are dropped."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('routine:' || $1))", patient_id
            )
            version = await conn.fetchval(
                "SELECT COALESCE(max(version), 0) + 1 FROM routine_models WHERE patient_id = $1",
                patient_id,
            )
            await conn.execute(
                "INSERT INTO routine_models (patient_id, version, model, trained_at,"
                " window_from, window_to, days, events, false_alarms, params, arrays)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11)",
                patient_id,
                version,
                model,
                ts(trained_at),
                ts(window[0]),
                ts(window[1]),
                days,
                events,
                false_alarms,
                orjson.dumps(params).decode(),
                arrays,
            )
            await conn.execute(
                "DELETE FROM routine_models WHERE patient_id = $1 AND version <= $2",
                patient_id,
                version - KEEP_VERSIONS,
            )
        return int(version)

    # ------------------------------------------------------------ episodes and labels

    async def detected(
        self,
        alarm_id: str,
        agency_id: str,
        patient_id: str,
        kind: str,
        start: float,
        raised_at: float,
        explanation: str,
        model_version: int | None,
    ) -> None:
        """Keep the episode that raised (or repeated) ``alarm_id`` (once)."""
        await self._db.pool.execute(
            "INSERT INTO routine_detections (alarm_id, start, agency_id, patient_id, kind,"
            " raised_at, explanation, model_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (alarm_id, start) DO NOTHING",
            alarm_id,
            ts(start),
            agency_id,
            patient_id,
            kind,
            ts(raised_at),
            explanation,
            model_version,
        )

    async def incident_asked(self, alarm_id: str, start: float, at: float) -> None:
        await self._db.pool.execute(
            "UPDATE routine_detections SET incident_asked_at = $3"
            " WHERE alarm_id = $1 AND start = $2 AND incident_asked_at IS NULL",
            alarm_id,
            ts(start),
            ts(at),
        )

    async def standing(self, patient_ids: Sequence[str]) -> list[Episode]:
        """The latest episode of each active routine alarm of the homes."""
        rows = await self._db.pool.fetch(
            f"SELECT DISTINCT ON (r.alarm_id) * FROM ({_EPISODE}) r"
            " JOIN alarms a ON a.id::text = r.alarm_id"
            " WHERE r.patient_id = ANY($1::text[]) AND a.cleared_at IS NULL"
            " ORDER BY r.alarm_id, r.raised_at DESC",
            list(patient_ids),
        )
        return [_episode(r) for r in rows]

    async def label(self, alarm_id: str, label: str, by: str, at: float) -> bool:
        """Label the alarm's latest episode (a dispatcher's ``false_alarm``); False when the
        alarm has no routine episode."""
        status = await self._db.pool.execute(
            "UPDATE routine_detections SET label = $2, labelled_by = $3, labelled_at = $4"
            " WHERE (alarm_id, start) IN (SELECT alarm_id, start FROM routine_detections"
            " WHERE alarm_id = $1 ORDER BY raised_at DESC LIMIT 1)",
            alarm_id,
            label,
            by,
            ts(at),
        )
        return status != "UPDATE 0"

    async def labelled(
        self, patient_id: str, label: str, since: float, until: float
    ) -> list[Episode]:
        """The home's episodes labelled ``label``, raised in [``since``, ``until``)."""
        rows = await self._db.pool.fetch(
            f"{_EPISODE} WHERE r.patient_id = $1 AND r.label = $2"
            " AND r.raised_at >= $3 AND r.raised_at < $4 ORDER BY r.raised_at",
            patient_id,
            label,
            ts(since),
            ts(until),
        )
        return [_episode(r) for r in rows]

    async def reviewed(self, agency_id: str, reviews: Sequence[Review]) -> None:
        """Keep what a retraining found drifting (once a window and measure)."""
        await self._db.pool.executemany(
            "INSERT INTO care_reviews (patient_id, agency_id, found_at, window_to, measure,"
            " recent, usual, explanation) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (patient_id, window_to, measure) DO NOTHING",
            [_review_row(agency_id, r) for r in reviews],
        )

    async def reviews(self, agency_id: str, since: float) -> list[Review]:
        """The agency's homes' drifts found since ``since``, the latest first."""
        rows = await self._db.pool.fetch(
            "SELECT * FROM care_reviews WHERE agency_id = $1 AND found_at >= $2"
            " ORDER BY found_at DESC, patient_id, measure",
            agency_id,
            ts(since),
        )
        return [
            Review(
                r["patient_id"],
                r["found_at"].timestamp(),
                r["window_to"].timestamp(),
                r["measure"],
                r["recent"],
                r["usual"],
                r["explanation"],
            )
            for r in rows
        ]

    async def episodes(self, patient_id: str) -> list[Episode]:
        """The home's episodes, the latest first."""
        rows = await self._db.pool.fetch(
            f"{_EPISODE} WHERE r.patient_id = $1 ORDER BY r.raised_at DESC", patient_id
        )
        return [_episode(r) for r in rows]


@dataclass(frozen=True, slots=True)
class Review:
    """A drift over days found in a home's routine, for its carers to review (not an alarm)."""

    patient_id: str
    found_at: float
    window_to: float
    measure: str
    recent: float
    usual: float
    explanation: str


def _review_row(agency_id: str, r: Review) -> tuple[object, ...]:
    at, to = ts(r.found_at), ts(r.window_to)
    return (r.patient_id, agency_id, at, to, r.measure, r.recent, r.usual, r.explanation)


def _model(r: Any) -> StoredModel:
    return StoredModel(
        r["patient_id"],
        r["version"],
        r["model"],
        r["trained_at"].timestamp(),
        r["window_from"].timestamp(),
        r["window_to"].timestamp(),
        r["days"],
        r["events"],
        r["false_alarms"],
        orjson.loads(r["params"]),
        bytes(r["arrays"]),
    )
