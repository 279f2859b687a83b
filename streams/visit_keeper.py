"""Visit orchestration: caregivers' fixes and the clock in; check-ins, alerts and families'
visit statuses out.

A batch of fixes: the fence cache is refreshed; each caregiver's fixes, in time order, are
screened by the fix-quality filters (the worker hands over those its screening against the live
index accepted; others are screened against her tracker's last fix), classified against every
fence in one vectorised call, and fed to her ``FenceTracker``; then her visits around now are
read and the pure rules (``visits.rules``) decide. Records are written conditionally on
their version (a record another worker moved is read again and decided again), alerts are
de-duplicated by the store, frames go out through the outbox, and the trackers are saved when
their fence states changed (or their saved last fix is :data:`TRACKER_SAVE_EVERY_S` old).
The tick does the same for time passing (announcements, ``in_visit``, late and missed).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel

from adapters.storage.connection import RedisConnection
from adapters.storage.postgres import Database
from adapters.storage.visit_store import FenceCache
from geofence.fences import Relation
from geofence.index import FenceIndex
from geofence.quality import AgencyPolicies, Position, QualityPolicy, screen
from geofence.transitions import FenceTracker, Fix, TrackerConfig, Transition, segments_ahead
from kernel import recipients
from kernel.contracts import AlertFrame, FixEvent, VisitStatusFrame
from kernel.settings import Settings
from visits.rules import (
    AlertChange,
    Outcome,
    VisitRecord,
    VisitRules,
    manual,
    on_fix,
    on_tick,
    on_transition,
)

log = logging.getLogger(__name__)

HORIZON_S = 12 * 3600.0
"""Visits further than this from now (start or end) are not read for a fix."""
TRACKER_SAVE_EVERY_S = 30.0
"""A tracker is saved when its fence states change, else once its last fix is this much newer
than the one saved: a restarted worker follows her on from a last fix at most this old (the
fixes after it are judged afresh, and records and alerts take nothing twice)."""
ATTEMPTS = 3


@dataclass(slots=True)
class _Moves:
    """One caregiver's batch: her transitions, and her newest usable fix."""

    transitions: list[Transition] = field(default_factory=list)
    last: Fix | None = None


class VisitKeeper:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        redis: RedisConnection,
        *,
        rules: VisitRules | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = redis.visit_store(db, settings)
        self.fences = FenceCache(self.store)
        self._outbox = redis.outbox(settings)
        self._rules = rules or VisitRules()
        self._config = TrackerConfig(
            min_dwell_in_s=settings.visit_dwell_in_s, min_dwell_out_s=settings.visit_dwell_out_s
        )
        self._policies = AgencyPolicies(QualityPolicy(max_future_s=settings.max_fix_ahead_s))
        self._clock = clock
        self._db = db
        self._names: dict[str, str] = {}  # caregivers' names, as families are told them
        self._trackers: dict[str, FenceTracker] = {}
        self._saved: dict[str, _Saved] = {}  # what Redis holds of each tracker kept in memory

    # ------------------------------------------------------------ inputs

    async def on_fixes(self, fixes: Sequence[FixEvent]) -> None:
        """Fixes not yet screened: each caregiver's, in time order, are screened by the quality
        filters against her tracker's last fix, then followed (:meth:`on_accepted`)."""
        await self._on(fixes, screened=False)

    async def on_accepted(self, fixes: Sequence[FixEvent]) -> None:
        """Fixes the quality filters accepted (in order, as the live index's screening gives
        them): followed without judging them again."""
        await self._on(fixes, screened=True)

    async def _on(self, fixes: Sequence[FixEvent], *, screened: bool) -> None:
        if not fixes:
            return
        index = await self.fences.refresh()
        now = self._clock()
        # accepted fixes are each newer than her one before: in order already, per caregiver
        ordered = list(fixes) if screened else sorted(fixes, key=lambda f: (f.caregiver_id, f.ts))
        ids = list(dict.fromkeys(f.caregiver_id for f in ordered))
        trackers = await self._trackers_of(ids)
        try:
            accepted = ordered if screened else self._screen(trackers, ordered, now)
            await self._follow(index, trackers, accepted, now)
        except BaseException:
            self.forget_trackers(ids)  # a retry starts again from what was saved
            raise

    def _screen(
        self, trackers: dict[str, FenceTracker], ordered: list[FixEvent], now: float
    ) -> list[FixEvent]:
        previous: dict[str, Position] = {
            c: t.last for c, t in trackers.items() if t.last is not None
        }
        return screen(previous, ordered, now, self._policies.for_agency).live

    async def _follow(
        self,
        index: FenceIndex,
        trackers: dict[str, FenceTracker],
        accepted: list[FixEvent],
        now: float,
    ) -> None:
        moves = track_fixes(index, trackers, accepted)
        if moves:
            records = await self.store.records_for(moves.keys(), now, HORIZON_S)
            for cid, m in moves.items():
                mine = records.get(cid, [])
                if mine or m.transitions:  # with neither, nothing can change
                    await self._decide(cid, m, index, mine, now)
        due = {cid: s for cid in moves if (s := _saving_due(trackers[cid], self._saved.get(cid)))}
        await self.store.save_trackers(trackers[cid] for cid in due)
        self._saved.update(due)

    def forget_trackers(self, caregiver_ids: Iterable[str] | None = None) -> None:
        """Drop trackers kept in memory (all of them when no ids are given): after a
        rebalance, since another worker may move them meanwhile, or after a failed batch."""
        if caregiver_ids is None:
            self._trackers.clear()
            self._saved.clear()
        for cid in caregiver_ids or ():
            self._trackers.pop(cid, None)
            self._saved.pop(cid, None)

    async def _trackers_of(self, ids: list[str]) -> dict[str, FenceTracker]:
        """The caregivers' trackers: kept in memory between batches (this worker alone moves
        its caregivers' trackers while its partitions stay), read from Redis when missing."""
        missing = [cid for cid in ids if cid not in self._trackers]
        if missing:
            read = await self.store.trackers(missing, self._config)
            self._trackers.update(read)
            self._saved.update((cid, _Saved.of(t)) for cid, t in read.items())
        return {cid: self._trackers[cid] for cid in ids}

    async def tick(self) -> None:
        """Time passing; a record moved meanwhile by another worker waits for the next tick."""
        now = self._clock()
        records = await self.store.active(now, self._rules.lookahead_s, HORIZON_S)
        await self._publish(on_tick(records, now, self._rules), now)

    async def manual(
        self, visit_id: str, kind: Literal["check_in", "check_out"], reason: str, at: float
    ) -> VisitRecord | None:
        """A person's check-in or check-out (flagged for review); the record, or None if the
        visit is unknown or the change does not apply."""
        for _ in range(ATTEMPTS):
            record = await self.store.record(visit_id)
            if record is None:
                return None
            now = self._clock()
            outcome = manual(record, kind, at, reason, now, self._rules)
            if not outcome.records:
                return None
            if await self._publish(outcome, now):
                return await self.store.record(visit_id)
        return None

    # ------------------------------------------------------------ deciding and telling

    async def _decide(
        self, cid: str, m: _Moves, index: FenceIndex, mine: list[VisitRecord], now: float
    ) -> None:
        for _ in range(ATTEMPTS):
            if await self._publish(self._plan(m, index, mine, now), now):
                return
            mine = (await self.store.records_for([cid], now, HORIZON_S)).get(cid, [])
        log.warning("visits of %s moved under us %d times; left to the tick", cid, ATTEMPTS)

    def _plan(self, m: _Moves, index: FenceIndex, mine: list[VisitRecord], now: float) -> Outcome:
        out, records = Outcome(), list(mine)
        for t in m.transitions:
            fence = index.get(t.fence_id)
            patient = fence.patient_id if fence is not None else t.fence_id
            step = on_transition(records, t, patient, now, self._rules)
            out.merge(step)
            records = [step.records.get(r.visit.visit_id, r) for r in records]
        if m.last is not None:
            out.merge(on_fix(records, m.last, now, self._rules))
        return out

    async def _name(self, caregiver_id: str) -> str | None:
        """Her name for the family's frames, read once per caregiver (None if unknown)."""
        if caregiver_id not in self._names:
            row = await self._db.caregiver(caregiver_id)
            if row is None:
                return None
            self._names[caregiver_id] = row.name
        return self._names[caregiver_id]

    async def _publish(self, outcome: Outcome, now: float) -> bool:
        """Save, apply alerts, send frames; False if a record had moved (nothing of it sent)."""
        if not outcome:
            return True  # most fixes change nothing: no round trip for them
        saved = {r.visit.visit_id for r in await self.store.save(outcome.records.values())}
        alerts = [a for a in outcome.alerts if a.visit_id is None or a.visit_id in saved]
        frames: list[tuple[str, BaseModel]] = []
        for record in outcome.statuses:
            if record.visit.visit_id in saved:
                frames += _status_frames(record, now, await self._name(record.visit.caregiver_id))
        frames += [_alert_frame(a) for a in await self.store.apply_alerts(alerts)]
        await self._outbox.send(frames)
        return len(saved) == len(outcome.records)


@dataclass(frozen=True, slots=True)
class _Saved:
    """What was last saved of a tracker: the revision of its fence states and its last fix's
    time."""

    revision: int
    last_ts: float

    @classmethod
    def of(cls, tracker: FenceTracker) -> _Saved:
        last = tracker.last
        return cls(tracker.revision, -math.inf if last is None else last.ts)


def _saving_due(tracker: FenceTracker, saved: _Saved | None) -> _Saved | None:
    """What saving the tracker now would save, if it must be saved: never saved, its fence
    states changed, or its last fix is :data:`TRACKER_SAVE_EVERY_S` newer than the one saved;
    else None."""
    now = _Saved.of(tracker)
    if saved is None or now.revision != saved.revision:
        return now
    return now if now.last_ts - saved.last_ts >= TRACKER_SAVE_EVERY_S else None


def track_fixes(
    index: FenceIndex, trackers: dict[str, FenceTracker], fixes: Sequence[FixEvent]
) -> dict[str, _Moves]:
    """Feed each caregiver's tracker her fixes in order; what moved, per caregiver. The fences
    a batch's segments cross are found in one pass over them all (another agency's homes are
    nothing to her)."""
    relations = _relations(index, fixes)
    points = [Fix(f.caregiver_id, f.lat, f.lon, f.ts, f.acc or 0.0) for f in fixes]
    segments, usable = segments_ahead(trackers, points)
    asked = {i: segment for i, segment in enumerate(segments) if segment is not None}
    crossed = index.crossings(list(asked.values()), [fixes[i].agency_id for i in asked])
    met = dict(zip(asked, crossed, strict=True))
    moves: dict[str, _Moves] = {}
    for i, (fix, relation, taken) in enumerate(zip(points, relations, usable, strict=True)):
        if not taken:
            continue  # hers, but coarse or not newer than her last: nothing moves
        m = moves.setdefault(fix.caregiver_id, _Moves())
        m.transitions += trackers[fix.caregiver_id].update(fix, relation, met.get(i, ()))
        m.last = fix
    return moves


_RELATIONS = {r.value: r for r in Relation}  # Relation(r) is slow for every row


def _relations(index: FenceIndex, fixes: Sequence[FixEvent]) -> list[dict[str, Relation]]:
    """Each fix's relation to its own agency's fences it is not wholly outside of (one call)."""
    lats = np.array([f.lat for f in fixes], dtype=np.float64)
    lons = np.array([f.lon for f in fixes], dtype=np.float64)
    accs = np.array([f.acc or 0.0 for f in fixes], dtype=np.float64)
    found = index.classify(lats, lons, accs, [f.agency_id for f in fixes])
    out: list[dict[str, Relation]] = [{} for _ in fixes]
    rows = zip(found.fix.tolist(), found.fence_id.tolist(), found.relation.tolist(), strict=True)
    for i, fence_id, relation in rows:
        out[i][fence_id] = _RELATIONS[relation]
    return out


def _status_frames(
    record: VisitRecord, now: float, name: str | None = None
) -> list[tuple[str, BaseModel]]:
    v, at = record.visit, now
    if record.state == "arrived" and record.check_in is not None:
        at = record.check_in.at
    elif record.state == "left" and record.check_out is not None:
        at = record.check_out.at
    frame = VisitStatusFrame(
        patient_id=v.patient_id,
        caregiver_id=v.caregiver_id,
        caregiver_name=name,
        visit_id=v.visit_id,
        state=record.state,
        eta_s=record.eta_s if record.state == "en_route" else None,
        at=at,
    )
    return [
        (recipients.family_of(v.agency_id, v.patient_id), frame),
        (recipients.caregiver(v.caregiver_id), frame),
    ]


def _alert_frame(a: AlertChange) -> tuple[str, BaseModel]:
    frame = AlertFrame(
        alert_id=a.key,
        kind=a.kind,
        state="raised" if a.raised else "cleared",
        agency_id=a.agency_id,
        patient_id=a.patient_id,
        caregiver_id=a.caregiver_id,
        visit_id=a.visit_id,
        at=a.at,
    )
    return recipients.dispatchers(a.agency_id), frame
