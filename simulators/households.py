"""The demo city's residents living in real time: each simulated patient's home has a resident
(``simulators.residents``) whose ambient sensors' events are kept as her recent history and then
published live, at their wall-clock times. Pure: no I/O, no clock; ``simulators.resident_feed``
seeds the history in Postgres and publishes on MQTT.

A home's life is cut into *chapters* of :data:`CHAPTER_DAYS` days on a fixed calendar (from
:data:`ANCHOR`, local midnights of :data:`~simulators.residents.ZONE`), each one
``simulate_home(home, CHAPTER_DAYS, seed, its first midnight)``: the same resident (her persona
and routine are drawn from the seed and the home alone) living new days in each. So the events
of any moment are the same whenever they are asked for, whatever day the city was started on: a
history seeded today and one seeded next week agree where they overlap. A chapter's first
:data:`~simulators.residents.LEARNING_DAYS` days carry no anomaly, the rest
``anomaly_rate`` a home-day (0 by default: residents living their routine, the demo's anomaly
being the one asked for, :class:`Fall`). Where two chapters meet, at a local midnight every 30
days, the night is cut at midnight (a night owl's bedtime after it, and a trip to the bathroom
after it, are lost).

Each device counts its events: ``seq`` is the chapter's number times :data:`SEQ_SPAN` plus the
device's count within the chapter, so it goes up event by event across the seeded history and
the live events, and from one chapter to the next, and an event's ``seq`` is the same whenever
it is computed. Ingest names a live event ``{device}:{seq}:{ts in ms}``; a seeded one is named
the same with :data:`SEEDED_PREFIX` before it (:func:`seeded_event`), so the two never clash.

A silent fall (:func:`plan_fall`) takes one resident, minutes after the start, seconds after a
PIR sees her walking about in the daytime: nothing of hers from then until help comes, the next
local midnight but at least :data:`FALL_LIES_H` hours later; after it her days go on.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kernel.contracts import DeviceEvent
from simulators.residents import DEVICES, ZONE, simulate_home

ANCHOR = date(2024, 1, 1)
"""Chapter 0's first day (a local date of :data:`ZONE`)."""
CHAPTER_DAYS = 30
"""Not a whole number of weeks: each chapter starts on another weekday, so its days are drawn
otherwise than the 6 before it (every chapter is drawn from the same seed: the one 7 chapters,
210 days, before it began on the same weekday, and the two are much alike)."""
SEQ_SPAN = 1 << 20
"""Room for a device's events in a chapter (a busy PIR fires a few hundred times a day)."""
HISTORY_DAYS = 21
SEEDED_PREFIX = "seed:"
FALL_LIES_H = 4.0
FALL_DAYTIME = (8.0, 21.0)
"""Local hours in which the asked-for fall may happen (she is up and about)."""
FALL_SEARCH_S = 2 * 86_400.0
AHEAD_S = 12 * 3600.0
H = 3600.0


@dataclass(frozen=True, slots=True)
class HomeEvent:
    """One event of a home's devices, as its device counts it."""

    ts: float
    """Epoch seconds, to the millisecond (as published)."""
    device_id: str
    kind: str
    room: str
    seq: int

    def topic(self, agency: str) -> str:
        return f"ck/{agency}/dev/{self.device_id}/evt"

    def body(self) -> dict[str, Any]:
        """What the device publishes (``kernel.contracts.DeviceEventPayload``)."""
        return {"type": self.kind, "ts": self.ts, "seq": self.seq, "data": {"room": self.room}}


@dataclass(frozen=True, slots=True)
class Fall:
    """The asked-for silent fall: nothing of ``patient_id``'s resident in [``at``, ``help_at``)."""

    patient_id: str
    at: float
    help_at: float


def chapter_start(chapter: int) -> float:
    """Chapter ``chapter``'s first local midnight (epoch s)."""
    day = ANCHOR + timedelta(days=CHAPTER_DAYS * chapter)
    return datetime.combine(day, time(), ZoneInfo(ZONE)).timestamp()


def chapter_of(t: float) -> int:
    """The chapter the moment ``t`` falls in."""
    local = datetime.fromtimestamp(t, ZoneInfo(ZONE)).date()
    return (local - ANCHOR).days // CHAPTER_DAYS


def next_midnight(t: float) -> float:
    """The local midnight after ``t``."""
    zone = ZoneInfo(ZONE)
    day = datetime.fromtimestamp(t, zone).date() + timedelta(days=1)
    return datetime.combine(day, time(), zone).timestamp()


def local_hour(t: float) -> float:
    local = datetime.fromtimestamp(t, ZoneInfo(ZONE))
    return local.hour + local.minute / 60 + local.second / 3600


def chapter_events(home: int, prefix: str, chapter: int, seed: int, rate: float) -> list[HomeEvent]:
    """A home's events in ``chapter``, in time order, each with its device's ``seq``."""
    history = simulate_home(home, CHAPTER_DAYS, seed, chapter_start(chapter), anomaly_rate=rate)
    names = {device: f"{prefix}-{device}" for device in DEVICES}
    counts: dict[str, int] = {}
    out = []
    base = chapter * SEQ_SPAN
    for e in history.events:
        device = names[e.device]
        n = counts.get(device, 0)
        counts[device] = n + 1
        out.append(HomeEvent(round(e.ts, 3), device, e.kind, e.room, base + n))
    return out


class Household:
    """One home's resident: her events between any two moments. Holds only the events of the
    :data:`AHEAD_S` after the last moment asked for (a whole chapter of a home is some 9,000
    events; making one again costs ~10 ms)."""

    def __init__(self, home: int, patient_id: str, seed: int, *, anomaly_rate: float = 0.0) -> None:
        self.home, self.patient_id, self.seed, self.rate = home, patient_id, seed, anomaly_rate
        self.persona = simulate_home(home, 1, seed, chapter_start(0)).persona
        self.fall: Fall | None = None
        self.chapters_made = 0
        self._held: list[HomeEvent] = []
        self._held_span = (0.0, 0.0)

    def _made(self, start: float, end: float) -> list[HomeEvent]:
        out: list[HomeEvent] = []
        for chapter in range(chapter_of(start), chapter_of(end) + 1):
            events = chapter_events(self.home, self.patient_id, chapter, self.seed, self.rate)
            self.chapters_made += 1
            out += events[_at(events, start) : _at(events, end)]
        return out

    def between(self, start: float, end: float) -> list[HomeEvent]:
        """Her home's events in [``start``, ``end``), in time order (none of hers while she
        lies fallen)."""
        if end <= start:
            return []
        held_from, held_to = self._held_span
        if held_from <= start and end <= held_to:
            events = self._held
        else:
            events = self._made(start, end + AHEAD_S)
            held_to = end + AHEAD_S
        first, last = _at(events, start), _at(events, end)
        out = events[first:last]
        self._held, self._held_span = events[last:], (end, held_to)
        fall = self.fall
        if fall is not None:
            out = [e for e in out if not fall.at <= e.ts < fall.help_at]
        return out


def _at(events: list[HomeEvent], t: float) -> int:
    """Where the first event at or after ``t`` is (events in time order)."""
    return bisect_left(events, t, key=lambda e: e.ts)


def due(households: Iterable[Household], start: float, end: float) -> list[HomeEvent]:
    """Every home's events in [``start``, ``end``), in time order."""
    out = [e for h in households for e in h.between(start, end)]
    out.sort(key=lambda e: e.ts)
    return out


def plan_fall(households: Sequence[Household], after: float, seed: int) -> Fall | None:
    """A silent fall at the first moment from ``after`` that one of the residents (none with a
    pet, whose PIRs would go on, nor away in hospital) is seen walking about in the daytime
    (her PIR fires, out of bed): seconds after it. Set on her household; None if none is seen
    within two days."""
    rng = random.Random(f"{seed}:resident-fall")
    best: tuple[float, Household] | None = None
    for h in households:
        if h.persona in ("pet_owner", "hospital_stay"):
            continue
        in_bed = False
        for e in h.between(after - 86_400.0, after + FALL_SEARCH_S):
            if e.kind in ("bed_in", "bed_out"):
                in_bed = e.kind == "bed_in"
            if best is not None and e.ts >= best[0]:
                break
            if (
                e.ts >= after
                and e.kind == "motion"
                and not in_bed
                and FALL_DAYTIME[0] <= local_hour(e.ts) < FALL_DAYTIME[1]
            ):
                best = (e.ts, h)
                break
    if best is None:
        return None
    at = round(best[0] + rng.uniform(5.0, 25.0), 3)
    fallen = best[1]
    fallen.fall = Fall(fallen.patient_id, at, max(next_midnight(at), at + FALL_LIES_H * H))
    return fallen.fall


def seeded_event(e: HomeEvent, agency: str) -> DeviceEvent:
    """A seeded history's event as the devices worker keeps one, named apart from ingest's."""
    return DeviceEvent.model_construct(  # valid by construction: what ingest makes of it
        event_id=f"{SEEDED_PREFIX}{e.device_id}:{e.seq}:{round(e.ts * 1000)}",
        agency_id=agency,
        device_id=e.device_id,
        type=e.kind,
        ts=e.ts,
        seq=e.seq,
        data={"room": e.room},
        received_at=e.ts,
        published_at=None,
    )
