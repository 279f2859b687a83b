"""The fixes' agents: caregivers' positions into the live index, the history and the visits.

- ``fixes``: messages each holding a batch of fixes (``ingest.batching``), taken several at a
  time; screened once by the quality filters against the live index, then at the same time
  accepted ones into the Redis live index and to dispatchers, accepted and late ones into the
  history in Postgres, and accepted ones to the visits (arrivals at and departures from
  patients' homes, ``streams.visit_keeper``); the ones the screen drops (null island, too
  old, too inaccurate...) onto the dead-letter topic with their reason, all at once, beside.
- ``presence``: phones gone away; their caregivers are no dispatch candidates until back.
- a timer for late and missed visits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import faust
from pydantic import TypeAdapter

from adapters.metrics import FixMetrics
from adapters.storage import outbox
from adapters.storage.history import History
from adapters.storage.live import LiveIndex, cell_of
from geofence.quality import AgencyPolicies, Position, QualityPolicy, Screening, screen
from kernel import keys, recipients
from kernel.contracts import FixEvent, LocationFrame, Presence
from kernel.settings import Settings
from streams.decoding import Refused, decode_packed
from streams.handling import with_retries
from streams.runtime import Runtime
from streams.visit_keeper import VisitKeeper

log = logging.getLogger(__name__)

FIX_MESSAGES = 512
"""Kafka messages of fixes taken at once at most: ingest packs what one wake-up took, from one
fix each when few flow to ``MAX_FIXES_PER_MESSAGE``, so the count caps little; the fixes are
then handled :data:`FIX_STEP` at a time."""
FIX_STEP = 4000
FIX_BATCH_WITHIN_S = 0.05
"""How long a batch gathers: about one of ingest's flushes (``ingest.service.FLUSH_AFTER_S``),
so a batch holds one message per partition rather than one or two messages; each batch costs
a few round trips to Redis and Postgres whatever its size."""
VISIT_TICK_S = 5.0
SCREENED = "dropped by the quality screen"


class LastAccepted:
    """Each caregiver's last accepted fix, what the screening judges her next one against: kept
    in the worker's memory between batches (this worker alone moves its caregivers while its
    partitions stay), read from the live index for a caregiver it does not know yet."""

    def __init__(self) -> None:
        self._known: dict[str, Position | None] = {}

    async def of(self, live: LiveIndex, caregiver_ids: Iterable[str]) -> dict[str, Position]:
        ids = list(dict.fromkeys(caregiver_ids))
        missing = [cid for cid in ids if cid not in self._known]
        if missing:
            found = await live.last_fixes(missing)
            self._known.update((cid, found.get(cid)) for cid in missing)
        return {cid: fix for cid in ids if (fix := self._known[cid]) is not None}

    def accepted(self, fixes: Iterable[FixEvent]) -> None:
        """Fixes screened as accepted, in order: each is her last from now on."""
        for f in fixes:
            self._known[f.caregiver_id] = f

    def forget(self, caregiver_ids: Iterable[str] | None = None) -> None:
        """Ask the live index again (about everyone when no ids are given): after a rebalance,
        or when a batch could not be applied."""
        if caregiver_ids is None:
            self._known.clear()
        for cid in caregiver_ids or ():
            self._known.pop(cid, None)


class FixPipeline:
    """What the ``fixes`` agent does with each batch it takes, in the agent's order: screened
    once, then the live index and history at the same time as the visits (``careknot bench
    fixes-step`` times this alone)."""

    def __init__(self, rt: Runtime, s: Settings) -> None:
        self.rt = rt
        self.keeper = VisitKeeper(s, rt.db, rt.redis)
        self.last = LastAccepted()
        self.history = History(rt.db)
        self.policies = AgencyPolicies(QualityPolicy(max_future_s=s.max_fix_ahead_s))
        self.throttle = outbox.LocationThrottle()

    def forget(self) -> None:
        """Partitions moved: another worker may move these caregivers meanwhile."""
        self.keeper.forget_trackers()
        self.last.forget()

    async def handle(self, values: list[bytes]) -> None:
        """A batch of Kafka values, :data:`FIX_STEP` fixes at a time."""
        refused: list[Refused] = []
        decoded = decode_fixes(values, refused)
        await self.rt.ready()
        await self.rt.park(keys.FIXES, refused)
        for n in range(0, len(decoded), FIX_STEP):
            await self._step(decoded[n : n + FIX_STEP])
        self.rt.fix_metrics.log_if_due(time.monotonic())

    async def _step(self, fixes: list[FixEvent]) -> None:
        rt, metrics = self.rt, self.rt.fix_metrics
        judging = partial(screen_fixes, rt, fixes, self.policies, metrics, self.last)
        screening = await with_retries("screening fixes", judging, partial(self._park, fixes))
        if screening is None:
            return  # logged: the servers failed it every time
        live = partial(apply_screening, rt, screening, self.history, self.throttle)
        visits = partial(self.keeper.on_accepted, screening.live)
        applied, _, _ = await asyncio.gather(
            with_retries("fixes", live),
            with_retries("visits", visits),
            rt.park(keys.FIXES, refusals(screening)),
        )
        if applied is None:  # logged: what Redis has decides her next fix
            self.last.forget(f.caregiver_id for f in screening.live)

    async def _park(self, fixes: list[FixEvent], reason: str, detail: str) -> None:
        """Fixes no try could screen, onto the dead-letter topic."""
        values = [f.model_dump_json().encode() for f in fixes]
        await self.rt.parker(keys.FIXES, values)(reason, detail)


def register(app: faust.App, rt: Runtime, s: Settings, topic: Callable[[str], Any]) -> None:
    pipeline = FixPipeline(rt, s)

    async def forget(sender: Any, *args: Any, **kwargs: Any) -> None:
        pipeline.forget()

    app.on_partitions_revoked.connect(forget)  # type: ignore[arg-type]

    @app.agent(topic(keys.FIXES), name="fixes")
    async def fixes(stream: Any) -> None:
        """The live index and history, and the visits, from the same fixes at the same time."""
        flusher = asyncio.create_task(outbox.keep_flushing(rt.outbox, pipeline.throttle, time.time))
        try:
            async for batch in stream.take(FIX_MESSAGES, within=FIX_BATCH_WITHIN_S):
                await pipeline.handle(batch)
        finally:
            flusher.cancel()

    @app.agent(topic(keys.PRESENCE), name="presence")
    async def presence(stream: Any) -> None:
        """Phones gone away: their caregivers are no longer dispatch candidates."""
        async for value in stream:
            for p in await rt.decode(Presence, [value], keys.PRESENCE):
                if p.online:
                    continue  # her next fix makes her available: a phone online says no more
                await rt.ready()
                await with_retries(p.event_id, partial(gone_offline, rt.live, rt.outbox, p))

    @app.timer(VISIT_TICK_S)  # type: ignore[untyped-decorator]
    async def visit_timer() -> None:
        await rt.ready()
        await with_retries("visit tick", pipeline.keeper.tick)


_FIX_LIST = TypeAdapter(list[FixEvent])


def decode_fixes(values: list[bytes], refused: list[Refused] | None = None) -> list[FixEvent]:
    """The fixes of messages each holding a JSON array of fixes or one fix, in order; a fix
    that does not decode is logged and dropped (added to ``refused`` when given), and its
    neighbours are kept."""
    return decode_packed(FixEvent, _FIX_LIST, values, refused)


async def screen_fixes(
    rt: Runtime,
    fixes: list[FixEvent],
    policies: AgencyPolicies,
    metrics: FixMetrics,
    last: LastAccepted | None = None,
) -> Screening[FixEvent]:
    """Judge a batch against each caregiver's last accepted fix (``last``'s, else the live
    index's), counting the verdicts: what the live index, the history and the visits take."""
    live = (await rt.ready()).live
    ids = (f.caregiver_id for f in fixes)
    previous = await (live.last_fixes(ids) if last is None else last.of(live, ids))
    now = time.time()
    if fixes:
        metrics.lag.set(now - max(f.received_at for f in fixes))
    screening = screen(previous, fixes, now, policies.for_agency)
    metrics.count(len(screening.live), screening.reasons)
    if last is not None:
        last.accepted(screening.live)
    return screening


def refusals(screening: Screening[FixEvent]) -> list[Refused]:
    """The fixes the screen dropped, to be dead-lettered with the reason of each (a duplicate
    or a late fix is no refusal: the history keeps it)."""
    return [
        Refused(f.model_dump_json().encode(), reason, f"{SCREENED}: {reason}")
        for f, reason in screening.dropped
    ]


async def apply_screening(
    rt: Runtime,
    screening: Screening[FixEvent],
    history: History,
    throttle: outbox.LocationThrottle | None = None,
) -> bool:
    """Move the live index with the accepted fixes while the history keeps accepted and late
    fixes, then queue the newly applied positions for the dispatchers (coalesced by the
    throttle); True once done. A retry is safe: the index never moves a caregiver to a fix no
    newer than hers, and the history ignores what it has. Without a throttle, the positions
    are sent at once."""
    throttle = throttle or outbox.LocationThrottle()
    live = (await rt.ready()).live
    recording = asyncio.ensure_future(history.record(screening.live, screening.history_only))
    try:
        applied = await live.update(screening.live)
    finally:
        await recording  # Redis and Postgres are written at the same time; both are awaited
    newest = {f.caregiver_id: f for f in screening.live if f.caregiver_id in applied}
    for f in newest.values():
        throttle.offer(f.agency_id, f.caregiver_id, location_frame(f, applied))
    await outbox.flush_due(rt.outbox, throttle, time.time())
    return True


async def apply_fixes(
    rt: Runtime,
    fixes: list[FixEvent],
    history: History,
    policies: AgencyPolicies,
    metrics: FixMetrics,
    throttle: outbox.LocationThrottle | None = None,
) -> Screening[FixEvent]:
    """Screen a batch and apply it (:func:`screen_fixes`, then :func:`apply_screening`)."""
    screening = await screen_fixes(rt, fixes, policies, metrics)
    await apply_screening(rt, screening, history, throttle)
    return screening


async def gone_offline(live: LiveIndex, box: outbox.Outbox, notice: Presence) -> bool:
    """Her phone went away (its last will): she is no dispatch candidate until her next fix, and
    her agency's dispatchers see her ``offline`` at once, where she last was. False when the
    notice changed nothing (she is busy, unknown, or a fix of hers came after it)."""
    if not await live.mark_offline(notice.caregiver_id, notice.at):
        return False
    for c in await live.candidates([notice.caregiver_id]):
        frame = LocationFrame(
            caregiver_id=c.caregiver_id,
            lat=c.lat,
            lon=c.lon,
            h3=cell_of(c.lat, c.lon),
            ts=c.ts,
            status=c.status,
        )
        await box.send([(recipients.dispatchers(c.agency_id), frame)])
    return True


def location_frame(f: FixEvent, applied: dict[str, str]) -> dict[str, Any]:
    """The ``location`` frame (:class:`LocationFrame`, as JSON) of an applied fix; built as a
    plain dict, since it is built for every caregiver who moved."""
    return {
        "type": "location",
        "caregiver_id": f.caregiver_id,
        "lat": f.lat,
        "lon": f.lon,
        "h3": cell_of(f.lat, f.lon),
        "ts": f.ts,
        "status": applied[f.caregiver_id],
    }
