"""The demo city's residents in real time (``simulators/households.py``): which events are due
between two moments, however the time is cut; each device's ``seq`` going up from the seeded
history into the live events and across chapters; the same events and ids whenever asked for;
what the devices publish as ``device_messages`` says and ingest accepts; the asked-for fall."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from careknot.up import default_commands
from ingest.parse import Limits, check_kind, parse_device_event, route
from simulators.households import (
    CHAPTER_DAYS,
    FALL_LIES_H,
    HISTORY_DAYS,
    SEEDED_PREFIX,
    SEQ_SPAN,
    HomeEvent,
    Household,
    chapter_of,
    chapter_start,
    due,
    local_hour,
    plan_fall,
    seeded_event,
)
from simulators.residents import ZONE, device_messages, home_devices, simulate_home

ZONE_INFO = ZoneInfo(ZONE)
NOW = datetime(2026, 12, 4, 16, 49, 38, tzinfo=ZONE_INFO).timestamp()
DAY = 86_400.0
H = 3600.0
SEED = 7
AGENCY = "leeds"


def household(home: int = 3) -> Household:
    return Household(home, f"{AGENCY}-p{home:03d}", SEED)


def test_the_events_due_are_the_same_however_the_time_is_cut() -> None:
    whole = household().between(NOW - DAY, NOW + DAY)
    h = household()
    cuts = [NOW - DAY, NOW - 5 * H, NOW - 1.0, NOW, NOW + 0.5, NOW + 7 * H, NOW + DAY]
    pieces = [e for a, b in itertools.pairwise(cuts) for e in h.between(a, b)]
    assert pieces == whole
    assert len(whole) > 200  # a day's life: some 300 events
    assert all(NOW - DAY <= e.ts < NOW + DAY for e in whole)
    assert [e.ts for e in whole] == sorted(e.ts for e in whole)
    assert h.between(NOW, NOW) == []


def test_every_home_due_comes_in_time_order() -> None:
    homes = [household(n) for n in (1, 2, 3)]
    merged = due(homes, NOW, NOW + 3 * H)
    assert [e.ts for e in merged] == sorted(e.ts for e in merged)
    fresh = [household(n) for n in (1, 2, 3)]
    assert sorted(merged, key=lambda e: (e.device_id, e.seq)) == sorted(
        (e for h in fresh for e in h.between(NOW, NOW + 3 * H)),
        key=lambda e: (e.device_id, e.seq),
    )


def test_a_chapters_events_are_the_residents_simulated_days() -> None:
    chapter = chapter_of(NOW)
    start = chapter_start(chapter)
    assert datetime.fromtimestamp(start, ZONE_INFO).time().isoformat() == "00:00:00"
    assert chapter_of(start) == chapter and chapter_of(start - 1.0) == chapter - 1
    life = simulate_home(3, CHAPTER_DAYS, SEED, start)
    assert household().persona == life.persona  # every chapter the same woman
    ours = household().between(start, chapter_start(chapter + 1))
    assert [(e.ts, e.device_id, e.kind, e.room) for e in ours] == [
        (round(e.ts, 3), f"{AGENCY}-p003-{e.device}", e.kind, e.room) for e in life.events
    ]


def test_what_is_published_is_what_the_devices_would_say() -> None:
    start = chapter_start(chapter_of(NOW))
    life = simulate_home(3, CHAPTER_DAYS, SEED, start)
    theirs = device_messages(life, AGENCY, f"{AGENCY}-p003")
    ours = household().between(start, chapter_start(chapter_of(NOW) + 1))
    assert [e.topic(AGENCY) for e in ours] == [m.topic for m in theirs]
    for e, m in zip(ours, theirs, strict=True):
        assert e.body() == {**m.body, "seq": m.body["seq"] + chapter_of(NOW) * SEQ_SPAN}


def test_ingest_takes_every_event_live_and_the_seeded_ids_are_apart() -> None:
    events = household().between(NOW - DAY, NOW + DAY)
    kinds = home_devices(f"{AGENCY}-p003")
    live_ids = set()
    for e in events:
        topic = e.topic(AGENCY)
        parsed = parse_device_event(route(topic), topic, orjson.dumps(e.body()), e.ts, Limits())
        check_kind(kinds[parsed.device_id], topic, parsed.type)
        live_ids.add(parsed.event_id)
        seeded = seeded_event(e, AGENCY)
        assert seeded.event_id == SEEDED_PREFIX + parsed.event_id
        assert (seeded.device_id, seeded.type, seeded.ts, seeded.seq, seeded.data) == (
            parsed.device_id,
            parsed.type,
            parsed.ts,
            parsed.seq,
            parsed.data,
        )
    assert len(live_ids) == len(events)
    assert not live_ids & {seeded_event(e, AGENCY).event_id for e in events}


def test_seq_goes_on_from_the_seeded_history_into_the_live_events() -> None:
    h = household()
    seeded = h.between(NOW - HISTORY_DAYS * DAY, NOW)
    live = h.between(NOW, NOW + 2 * DAY)
    seqs: dict[str, list[int]] = defaultdict(list)
    for e in seeded + live:
        seqs[e.device_id].append(e.seq)
    assert set(seqs) == set(home_devices(f"{AGENCY}-p003"))
    for device, counted in seqs.items():
        assert all(a < b for a, b in itertools.pairwise(counted)), device
    assert chapter_of(NOW - HISTORY_DAYS * DAY) < chapter_of(NOW) == chapter_of(NOW + 2 * DAY)
    last_seeded = {e.device_id: e.seq for e in seeded}
    first_live: dict[str, int] = {}
    for e in live:
        first_live.setdefault(e.device_id, e.seq)
    assert len(first_live) >= 7  # (the front door may stay shut two days)
    assert first_live == {device: last_seeded[device] + 1 for device in first_live}


def test_seq_goes_up_across_a_chapter_and_each_chapter_counts_from_its_own_base() -> None:
    edge = chapter_start(chapter_of(NOW) + 1)
    events = household().between(edge - DAY, edge + DAY)
    by_device: dict[str, list[HomeEvent]] = defaultdict(list)
    for e in events:
        by_device[e.device_id].append(e)
    crossed = 0
    for evs in by_device.values():
        assert all(a.seq < b.seq for a, b in itertools.pairwise(evs))
        after = [e for e in evs if e.ts >= edge]
        if after:
            assert after[0].seq == chapter_of(edge) * SEQ_SPAN
            crossed += 1
    assert crossed >= 5


def test_the_same_events_and_ids_whenever_they_are_asked_for() -> None:
    first = household().between(NOW - 2 * DAY, NOW + DAY)
    asked_later = household()
    asked_later.between(NOW + 3 * DAY, NOW + 4 * DAY)  # another day held, then back
    assert asked_later.between(NOW - 2 * DAY, NOW + DAY) == first
    a_week_on = household().between(NOW - 2 * DAY, NOW + 8 * DAY)  # a run started later
    assert [e for e in a_week_on if e.ts < NOW + DAY] == first
    assert [seeded_event(e, AGENCY).event_id for e in first] == [
        seeded_event(e, AGENCY).event_id for e in a_week_on if e.ts < NOW + DAY
    ]
    other_seed = Household(3, f"{AGENCY}-p003", SEED + 1).between(NOW, NOW + DAY)
    assert [e.ts for e in other_seed] != [e.ts for e in first if e.ts >= NOW]


@pytest.mark.parametrize("after_min", [20.0, 600.0, 1000.0])
def test_the_fall_asked_for_silences_one_resident_until_help_comes(after_min: float) -> None:
    homes = [household(n) for n in range(1, 21)]
    after = NOW + after_min * 60.0
    fall = plan_fall(homes, after, SEED)
    assert fall is not None
    assert fall == plan_fall([household(n) for n in range(1, 21)], after, SEED)
    fallen = next(h for h in homes if h.patient_id == fall.patient_id)
    assert fallen.fall == fall
    assert [h for h in homes if h.fall is not None] == [fallen]
    assert fallen.persona not in ("pet_owner", "hospital_stay")
    assert after < fall.at and fall.help_at >= fall.at + FALL_LIES_H * H
    assert 8.0 <= local_hour(fall.at) < 21.0 + 1 / 60
    unfallen = household(fallen.home).between(fall.at - 2 * H, fall.help_at + DAY)
    seen = [e for e in unfallen if e.ts < fall.at]
    assert seen[-1].kind == "motion" and fall.at - seen[-1].ts <= 25.0  # seconds after a PIR
    assert any(fall.at <= e.ts < fall.help_at for e in unfallen)  # what she would have done
    events = fallen.between(fall.at - 2 * H, fall.help_at + DAY)
    assert [e for e in events if fall.at <= e.ts < fall.help_at] == []
    assert [e for e in events if e.ts < fall.at] == seen
    assert [e for e in events if e.ts >= fall.help_at] == [
        e for e in unfallen if e.ts >= fall.help_at
    ]


def test_up_passes_the_simulators_options_on() -> None:
    commands = dict(default_commands(True, ["--resident-fall-after", "20"]))
    assert commands["simulate"][-3:] == ["simulate", "--resident-fall-after", "20"]
    assert "simulate" not in dict(default_commands(False, ["--resident-fall-after", "20"]))
