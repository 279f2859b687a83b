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
frames go out with a Redis marker of its id in one script
(:meth:`adapters.storage.outbox.Outbox.announce`), and an announcement whose marker is there is
not told again. One subject's announcements are delivered by one worker at a time (a lock of the
subject), in the order they were made.

Table ``announcements``: ``id`` (uuid, the marker's name), ``made`` (order of making),
``subject_id`` (the incident or alarm), ``made_at``, ``body`` (jsonb: frames, offer records,
statuses, notifications).
"""

from __future__ import annotations

import json
import logging
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
"""Subjects delivered by one call of :meth:`Announcements.deliver_due`."""

log = logging.getLogger(__name__)


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
        told = [await self._deliver(subject, now) for subject in sorted(set(subject_ids))]
        return Delivered(sum(d.announcements for d in told), sum(d.frames for d in told))

    async def deliver_due(self, made_before: float, now: float) -> Delivered:
        """Tell what a worker committed before ``made_before`` and never told (it died, or
        Redis was away), subject by subject: one that fails is logged and left for the next
        try, and the others go on."""
        subjects = await self._db.pool.fetch(
            "SELECT subject_id FROM announcements WHERE made_at <= $1"
            " GROUP BY subject_id ORDER BY min(made) LIMIT $2",
            ts(made_before),
            DUE_BATCH,
        )
        told = Delivered(0, 0)
        for row in subjects:
            try:
                done = await self._deliver(str(row["subject_id"]), now)
            except Exception as exc:
                log.warning("announcements of %s not told yet: %s", row["subject_id"], exc)
                continue
            told = Delivered(told.announcements + done.announcements, told.frames + done.frames)
        return told

    async def _deliver(self, subject_id: str, now: float) -> Delivered:
        """The subject's announcements, in the order they were made, one delivery of a subject
        at a time (a lock of its own): deleted, told, and committed only once Redis has them,
        so a failure leaves them for the next try."""
        async with self._db.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('announce:' || $1))", subject_id
            )
            rows = await conn.fetch(
                "DELETE FROM announcements WHERE subject_id = $1 RETURNING id, made, body",
                uuid.UUID(subject_id),
            )
            frames = 0
            for row in sorted(rows, key=lambda r: r["made"]):
                frames += await self._tell(str(row["id"]), Announcement.from_body(row["body"]), now)
        return Delivered(len(rows), frames)

    async def tell_now(self, a: Announcement, now: float) -> None:
        """Tell what changed no record (a refusal, a result of nothing, a dose overdue), at
        once and with no marker: records, statuses, notifications, then the frames."""
        await self._effects(a, now)
        by_recipient: dict[str, list[bytes]] = {}
        for recipient, message in a.frames:
            by_recipient.setdefault(recipient, []).append(message)
        await self._outbox.send_many(list(by_recipient.items()))

    async def _tell(self, announcement_id: str, a: Announcement, now: float) -> int:
        """Nothing if it was told (its marker says so); else records, statuses and
        notifications, then the frames and the marker in one script; the frames sent. A
        failure before the marker tells records, statuses and notifications again next time."""
        if await self._outbox.announced(announcement_id):
            return 0
        await self._effects(a, now)
        sent = await self._outbox.announce(announcement_id, a.frames)
        return len(a.frames) if sent else 0

    async def _effects(self, a: Announcement, now: float) -> None:
        """What an announcement does beside its frames: records, statuses, notifications."""
        if a.records:
            await self._records.write(a.records, now)
        for caregiver_id, status in a.statuses:
            await self._live.set_status(caregiver_id, status)
        for n in a.notifications:
            if not await notify(n.urls, n.title, n.body):
                self.notifications_failed += 1
                log.warning("notification not taken by every URL: %s", n.title)

    async def waiting(self) -> int:
        """How many announcements are kept, not yet told."""
        return int(await self._db.pool.fetchval("SELECT count(*) FROM announcements"))
