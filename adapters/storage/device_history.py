"""Every device event a home's devices sent, kept in Postgres (migration 11): each home's event
history, the record an agency audits and the routine models learn from.

Written in batches by the ``devices`` worker, whatever else the event does (the dispatch worker
opens incidents and raises alarms from the device-events topic; ambient sensors' events come on
home-activity, which only the history reads). Each event is kept once: its id is the
device's, its ``seq`` and its time (``ingest.parse``), so an event Kafka or the broker delivers
again is not kept twice. The patient is the one the device belonged to when it was written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from adapters.storage.postgres import Database, ts
from kernel.contracts import DeviceEvent

_INSERT = """
INSERT INTO device_events (event_id, agency_id, device_id, patient_id, type, ts, seq, data,
                           received_at)
SELECT e.event_id, e.agency_id, e.device_id, d.patient_id, e.type, e.ts, e.seq, e.data::jsonb,
       e.received_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bigint[],
            $7::text[], $8::timestamptz[])
     AS e(event_id, agency_id, device_id, type, ts, seq, data, received_at)
LEFT JOIN devices d ON d.id = e.device_id
ON CONFLICT (event_id) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class KeptEvent:
    event_id: str
    device_id: str
    patient_id: str | None
    type: str
    ts: float
    data: dict[str, object]


class DeviceHistory:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def keep(self, events: Sequence[DeviceEvent]) -> int:
        """Keep ``events`` (those kept before are left as they were); how many were new."""
        if not events:
            return 0
        status = await self._db.pool.execute(
            _INSERT,
            [e.event_id for e in events],
            [e.agency_id for e in events],
            [e.device_id for e in events],
            [e.type for e in events],
            [ts(e.ts) for e in events],
            [e.seq for e in events],
            [orjson.dumps(e.data).decode() for e in events],
            [ts(e.received_at) for e in events],
        )
        return int(status.rsplit(" ", 1)[1])

    async def count(self, agency_id: str) -> int:
        """How many events of ``agency_id``'s devices are kept."""
        n = await self._db.pool.fetchval(
            "SELECT count(*) FROM device_events WHERE agency_id = $1", agency_id
        )
        return int(n)

    async def latest(
        self, patient_ids: Sequence[str], since: float, types: Sequence[str] = ()
    ) -> dict[str, float]:
        """Each patient's latest event kept from ``since`` on (only ``types`` when given); a
        patient with none is left out."""
        rows = await self._db.pool.fetch(
            "SELECT patient_id, max(ts) AS ts FROM device_events"
            " WHERE patient_id = ANY($1::text[]) AND ts >= $2"
            " AND (cardinality($3::text[]) = 0 OR type = ANY($3::text[]))"
            " GROUP BY patient_id",
            list(patient_ids),
            ts(since),
            list(types),
        )
        return {r["patient_id"]: r["ts"].timestamp() for r in rows}

    async def of_patient(
        self, patient_id: str, since: float, until: float, types: Sequence[str] = ()
    ) -> list[KeptEvent]:
        """The patient's home's events in [``since``, ``until``), in time order; only
        ``types`` when given."""
        rows = await self._db.pool.fetch(
            "SELECT event_id, device_id, patient_id, type, ts, data FROM device_events"
            " WHERE patient_id = $1 AND ts >= $2 AND ts < $3"
            " AND (cardinality($4::text[]) = 0 OR type = ANY($4::text[]))"
            " ORDER BY ts, event_id",
            patient_id,
            ts(since),
            ts(until),
            list(types),
        )
        return [
            KeptEvent(
                r["event_id"],
                r["device_id"],
                r["patient_id"],
                r["type"],
                r["ts"].timestamp(),
                orjson.loads(r["data"]),
            )
            for r in rows
        ]
