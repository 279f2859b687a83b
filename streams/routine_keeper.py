"""Each home's routine, watched live by the devices worker: its model scores the home as its
ambient events arrive and every ``routine_tick_s`` when nothing arrives (silence is the signal),
raises and clears the routine alarms with their explanations, and asks dispatch for an incident
when unusual inactivity persists. Each home is retrained once a day, after 04:00 local (the
start of a resident's day), on the events of the days before it, and each version is kept with
the window it saw (``adapters.storage.routines``).

- The homes watched are the patients with an ambient sensor, read at the first tick and again
  every ``routine_homes_read_s``; their last two days of events come from the record
  (``device_events``), then from the stream, after the history has kept them; an event seen
  both ways counts once (by its id).
- A home with fewer than ``routines.models.MIN_DAYS`` days of her own is judged by the
  population prior until it has them.
- The decisions are ``routines.watch``'s; an alarm is ``routine:{patient}`` and the detection's
  kind, raised through the alarm keeper (so its ladder climbs like any other), and each episode
  is kept with its start, its explanation and the model version that saw it. A dispatcher's
  ``false_alarm`` on one is kept as its label and is learnt from at the next retraining.
- Each retraining also compares her last week with the weeks before (``routines.drift``): a
  drift (less activity, more time in bed, restless nights) is kept for care review, not raised
  as an alarm.
- Persisting inactivity asks dispatch, through the offer-answers topic, to open an incident from
  the alarm (``open_incident`` with ``routine-monitor`` as its dispatcher); asked once an
  episode, the command's id makes a repeat one incident.

Like the devices' health, the routines are watched by one devices worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

from adapters.storage.postgres import Database
from adapters.storage.routines import AmbientEvent, Review, RoutineStore, WatchedHome
from kernel.contracts import ACTIVITY_EVENT_TYPES, ROUTINE_MONITOR, AlarmCommand, DeviceEvent
from kernel.settings import Settings
from routines.drift import Drift, drift
from routines.features import Reading, Timeline, day_bounds, resident_day
from routines.models import WINDOW_DAYS, FalseAlarm, HourlyBaseline
from routines.persist import params_and_arrays, restored
from routines.watch import KEEP_S, SEVERITY, Home, Standing, Steps, judge, room_of
from streams.alarm_keeper import AlarmKeeper

log = logging.getLogger(__name__)

MODEL = "baseline"
DAY_S = 86_400.0
READ_HOMES_A_TIME = 500
SCORES_BETWEEN_YIELDS = 200

AskIncident = Callable[[AlarmCommand], Awaitable[None]]


def source_of(patient_id: str) -> str:
    return f"routine:{patient_id}"


@dataclass(slots=True)
class Watched:
    home: WatchedHome
    live: Home
    model: HourlyBaseline = field(default_factory=HourlyBaseline)
    version: int | None = None
    trained_until: float = float("-inf")
    standing: dict[str, Standing] = field(default_factory=dict)


class RoutineKeeper:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        alarms: AlarmKeeper,
        ask_incident: AskIncident,
        clock: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._store = RoutineStore(db)
        self._alarms = alarms
        self._ask = ask_incident
        self._clock = clock
        self._homes: dict[str, Watched] = {}
        self._devices: dict[str, tuple[str, str] | None] = {}
        """Each device's patient and kind, as read; None: not registered (read again with the
        homes)."""
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()
        self.ignored: Counter[str] = Counter()
        """Ambient events left out, by why: ``unregistered_device``, ``unknown_room``."""
        self.retrained = 0
        self.scored = 0
        self.raised: Counter[str] = Counter()
        """Routine alarms raised (or repeated), by kind."""

    # ------------------------------------------------------------ events and silence

    async def events(self, events: Sequence[DeviceEvent]) -> None:
        """Events the history kept: their homes take the ambient ones. A home is scored at
        once when they may change what it is told: an alarm of it stands (she moved: it may
        clear), or its front door opened (at night, she may be wandering); the others wait
        for the tick, a minute at most, since a movement raises nothing."""
        ambient = [e for e in events if e.type in ACTIVITY_EVENT_TYPES]
        if not ambient:
            return
        await self._read_homes()
        unknown = {e.device_id for e in ambient} - self._devices.keys()
        if unknown:
            found = await self._store.device_kinds(sorted(unknown))
            self._devices.update({d: found.get(d) for d in unknown})  # not found: none, kept
        urgent: dict[str, Watched] = {}
        for e in ambient:
            where = self._devices.get(e.device_id)
            if where is None:
                self.ignored["unregistered_device"] += 1
                continue
            w = self._homes.get(where[0])
            room = e.data.get("room")
            if w is None or not self._take(w, e.event_id, e.ts, e.type, room, where[1]):
                continue
            if w.standing or (e.type == "door_open" and room_of(room, where[1]) == "hall"):
                urgent[where[0]] = w
        now = self._clock()
        for w in urgent.values():
            await self._score(w, now)

    async def tick(self) -> None:
        """Read the homes when due, retrain those whose day began since, score every one."""
        await self._read_homes()
        now = self._clock()
        await self._retrain(now)
        for i, w in enumerate(list(self._homes.values())):
            await self._score(w, now)
            if i % SCORES_BETWEEN_YIELDS == SCORES_BETWEEN_YIELDS - 1:
                await asyncio.sleep(0)  # the worker's other agents go on meanwhile

    def _take(
        self, w: Watched, event_id: str, at: float, kind: str, room: object, device: str | None
    ) -> bool:
        where = room_of(room, device)
        if where is None:
            self.ignored["unknown_room"] += 1
            return False
        return w.live.add(event_id, Reading(at, where, kind))

    # ------------------------------------------------------------ the homes, from the record

    async def _read_homes(self) -> None:
        async with self._lock:
            now = self._clock()
            if now - self._read_at < self._settings.routine_homes_read_s:
                return
            homes = {h.patient_id: h for h in await self._store.homes()}
            self._devices = {d: w for d, w in self._devices.items() if w is not None}
            new = [h for pid, h in homes.items() if pid not in self._homes]
            for pid in set(self._homes) - homes.keys():
                del self._homes[pid]
            for i in range(0, len(new), READ_HOMES_A_TIME):
                await self._load(new[i : i + READ_HOMES_A_TIME], now)
            self._read_at = now
            if new:
                log.info("watching the routines of %d homes (%d new)", len(homes), len(new))

    async def _load(self, homes: Sequence[WatchedHome], now: float) -> None:
        ids = [h.patient_id for h in homes]
        models = await self._store.latest_models(ids)
        loaded = {h.patient_id: Watched(h, Home(ZoneInfo(h.zone))) for h in homes}
        for pid, stored in models.items():
            w = loaded[pid]
            w.model, w.version = restored(stored.params, stored.arrays), stored.version
            w.trained_until = stored.window_to
        for e in await self._store.activity(ids, now - KEEP_S, now + DAY_S):
            self._take(loaded[e.patient_id], e.event_id, e.ts, e.type, e.room, e.device_kind)
        for ep in await self._store.standing(ids):
            loaded[ep.patient_id].standing[ep.kind] = Standing(
                ep.alarm_id, ep.kind, ep.start, ep.raised_at, ep.incident_asked
            )
        self._homes.update(loaded)

    # ------------------------------------------------------------ nightly retraining

    async def _retrain(self, now: float) -> None:
        due = [w for w in self._homes.values() if w.trained_until < _day_start(w, now)]
        started = time.monotonic()
        for w in due:
            await self.retrain(w.home.patient_id, now)
            if time.monotonic() - started >= self._settings.routine_retrain_s:
                break

    async def retrain(self, patient_id: str, now: float) -> int | None:
        """Fit the home's model on the days before today's (04:00 local), with its
        dispatchers' false-alarm labels, and keep it as a new version; its number."""
        w = self._homes.get(patient_id)
        if w is None:
            return None
        until = _day_start(w, now)
        since = until - (WINDOW_DAYS + 1) * DAY_S
        events = await self._store.activity([patient_id], since, until)
        labels = await self._store.labelled(patient_id, "false_alarm", since, until)
        false_alarms = [
            FalseAlarm(ep.kind, ep.raised_at, ep.start)  # type: ignore[arg-type]
            for ep in labels
            if ep.kind in SEVERITY
        ]
        model, drifts = await asyncio.to_thread(_fitted, w.live.zone, events, until, false_alarms)
        params, arrays = params_and_arrays(model)
        w.version = await self._store.save_model(
            patient_id, MODEL, now, (since, until), model.days, len(events),
            len(false_alarms), params, arrays,
        )  # fmt: skip
        w.model, w.trained_until = model, until
        self.retrained += 1
        reviews = [
            Review(patient_id, now, until, d.measure, d.recent, d.usual, d.explanation)
            for d in drifts
        ]
        await self._store.reviewed(w.home.agency_id, reviews)
        return w.version

    # ------------------------------------------------------------ scoring, and its steps

    async def _score(self, w: Watched, now: float) -> None:
        tl = w.live.timeline(now)
        detections = w.model.score(tl, now)
        self.scored += 1
        steps = judge(w.standing, detections, now, self._settings.routine_incident_after_s)
        if steps:
            await self._carry_out(w, steps, now)

    async def _carry_out(self, w: Watched, steps: Steps, now: float) -> None:
        home = w.home
        source = source_of(home.patient_id)
        for d in steps.raise_:
            stored = await self._alarms.raise_(
                home.agency_id, source, d.kind, SEVERITY[d.kind],  # type: ignore[arg-type]
                home.patient_id, d.explanation,
            )  # fmt: skip
            await self._store.detected(
                stored.id, home.agency_id, home.patient_id, d.kind, d.start, now,
                d.explanation, w.version,
            )  # fmt: skip
            w.standing[d.kind] = Standing(stored.id, d.kind, d.start, now)
            self.raised[d.kind] += 1
        for kind in steps.clear:
            await self._alarms.clear(home.agency_id, source, kind)
            del w.standing[kind]
        for s in steps.open_incident:
            await self._ask(
                AlarmCommand(
                    command_id=f"routine:{s.alarm_id}:{s.start:.0f}",
                    command="open_incident",
                    alarm_id=s.alarm_id,
                    agency_id=home.agency_id,
                    dispatcher_id=ROUTINE_MONITOR,
                    at=now,
                )
            )
            await self._store.incident_asked(s.alarm_id, s.start, now)
            w.standing[s.kind] = replace(s, incident_asked=True)

    # ------------------------------------------------------------ what it holds

    def forget(self) -> None:
        """Drop what it holds: the next read takes every home again from the record."""
        self._homes.clear()
        self._read_at = float("-inf")

    def watched(self, patient_id: str) -> Watched | None:
        return self._homes.get(patient_id)

    def __len__(self) -> int:
        return len(self._homes)


def _day_start(w: Watched, now: float) -> float:
    """The start (04:00 local) of the home's resident's day at ``now``."""
    return day_bounds(resident_day(now, w.live.zone), w.live.zone)[0]


def _fitted(
    zone: ZoneInfo, events: Sequence[AmbientEvent], until: float, labels: Sequence[FalseAlarm]
) -> tuple[HourlyBaseline, list[Drift]]:
    """The home's model fitted on ``events``, and how her last week drifted from her weeks
    before."""
    readings = []
    for e in events:
        room = room_of(e.room, e.device_kind)
        if room is not None:
            readings.append(Reading(e.ts, room, e.type))
    tl = Timeline.of(readings, zone)
    model = HourlyBaseline()
    model.fit(tl, until, false_alarms=labels)
    return model, drift(tl, until)
