"""The transactional outbox: what a committed dispatch step must tell, kept in Postgres until
it is told.

A step that changes an incident (a wave of offers, an acceptance, an escalation, a dispatcher's
hand, offers expiring) or an alarm writes its :class:`Announcement` in the same transaction as
the change, so the two commit or fail together; the incident or alarm is its subject. The
dispatcher then delivers the subject's announcements
(:meth:`Announcements.deliver`): offer records and caregivers' statuses into Redis, frames into
the recipients' outboxes, and deletes the rows, all before its transaction commits. A worker
that dies between the commit and the delivery leaves the rows behind; the offer timer delivers
them (:meth:`Announcements.deliver_due`), so everyone is still told, once: each announcement's
frames go out under a Redis marker of its id (:meth:`adapters.storage.outbox.Outbox.announce`),
and a second delivery of the same announcement sends nothing.

Table ``announcements``: ``id`` (uuid, the marker's name), ``made`` (order of making),
``subject_id`` (the incident or alarm), ``made_at``, ``body`` (jsonb: frames, offer records,
statuses, notifications).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.notify import notify
from adapters.storage.live import LiveIndex
from adapters.storage.offer_records import OfferRecord, OfferRecords
from adapters.storage.outbox import Outbox
from adapters.storage.postgres import Conn, Database, ts

DUE_BATCH = 200


@dataclass(frozen=True, slots=True)
class Notification:
    """A message to people outside the system, through Apprise (``adapters.notify``)."""

    urls: tuple[str, ...]
    title: str
    body: str


@dataclass(frozen=True, slots=True)
class Announcement:
    """What one committed step tells: ``frames`` (recipient, JSON object), the ``records``
    the gateways check answers against, caregivers' new ``statuses`` (caregiver, status), and
    ``notifications`` to people outside (sent at least once: a delivery that fails after them
    sends them again)."""

    frames: Sequence[tuple[str, bytes]] = ()
    records: Sequence[OfferRecord] = ()
    statuses: Sequence[tuple[str, str]] = field(default_factory=tuple)
    notifications: Sequence[Notification] = ()

    def __bool__(self) -> bool:
        return bool(self.frames or self.records or self.statuses or self.notifications)

    def body(self) -> str:
        return json.dumps(
            {
                "frames": [[r, f.decode()] for r, f in self.frames],
                "records": [
                    [r.offer_id, r.caregiver_id, r.incident_id, r.agency_id, r.expires_at]
                    for r in self.records
                ],
                "statuses": [list(s) for s in self.statuses],
                "notifications": [[list(n.urls), n.title, n.body] for n in self.notifications],
            }
        )

    @classmethod
    def from_body(cls, body: str) -> Announcement:
        data: dict[str, Any] = json.loads(body)
        return cls(
            [(r, f.encode()) for r, f in data["frames"]],
            [OfferRecord(*r) for r in data["records"]],
            [(c, s) for c, s in data["statuses"]],
            [Notification(tuple(u), t, b) for u, t, b in data.get("notifications", [])],
        )


async def keep(conn: Conn, subject_id: str, announcement: Announcement | None, now: float) -> None:
    """Keep ``announcement`` in the step's transaction ``conn`` (nothing when there is none)."""
    if not announcement:
        return
    await conn.execute(
        "INSERT INTO announcements(id, subject_id, made_at, body) VALUES ($1, $2, $3, $4)",
        uuid.uuid4(),
        uuid.UUID(subject_id),
        ts(now),
        announcement.body(),
    )


@dataclass(frozen=True, slots=True)
class Delivered:
    announcements: int
    frames: int


class Announcements:
    """Delivers the announcements the steps kept (:func:`keep`)."""

    def __init__(
        self, db: Database, outbox: Outbox, records: OfferRecords, live: LiveIndex
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._records = records
        self._live = live
        self.notifications_failed = 0

    async def deliver(self, subject_ids: Sequence[str], now: float) -> Delivered:
        """Tell everything the subjects' committed steps announced, oldest first."""
        if not subject_ids:
            return Delivered(0, 0)
        return await self._take(
            "subject_id = ANY($1::uuid[])", [uuid.UUID(i) for i in subject_ids], now
        )

    async def deliver_due(self, made_before: float, now: float) -> Delivered:
        """Tell what a worker committed before ``made_before`` and never told (it died)."""
        return await self._take("made_at <= $1", ts(made_before), now)

    async def _take(self, where: str, arg: object, now: float) -> Delivered:
        """Delete the rows (skipping those another worker is delivering), deliver them, and
        commit only once Redis has them: a failure leaves them for the next try."""
        async with self._db.transaction() as conn:
            rows = await conn.fetch(
                "DELETE FROM announcements WHERE id IN (SELECT id FROM announcements"
                f" WHERE {where} ORDER BY made LIMIT {DUE_BATCH} FOR UPDATE SKIP LOCKED)"
                " RETURNING id, made, body",
                arg,
            )
            frames = 0
            for row in sorted(rows, key=lambda r: r["made"]):
                frames += await self._tell(str(row["id"]), Announcement.from_body(row["body"]), now)
        return Delivered(len(rows), frames)

    async def _tell(self, announcement_id: str, a: Announcement, now: float) -> int:
        """Records and statuses first (writing them twice is harmless), notifications, then
        the frames, once; the number of frames sent."""
        if a.records:
            await self._records.write(a.records, now)
        for caregiver_id, status in a.statuses:
            await self._live.set_status(caregiver_id, status)
        for n in a.notifications:
            if not await notify(n.urls, n.title, n.body):
                self.notifications_failed += 1
        if not a.frames:
            return 0
        sent = await self._outbox.announce(announcement_id, a.frames)
        return len(a.frames) if sent else 0

    async def waiting(self) -> int:
        """How many announcements are kept, not yet told."""
        return int(await self._db.pool.fetchval("SELECT count(*) FROM announcements"))
