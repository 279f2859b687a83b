"""The simulated residents (``simulators/residents.py``): the same history for the same seed, her
events in order and within her days, each persona living as it says, and each injected anomaly
where its ground truth says and visible in her events."""

from __future__ import annotations

import statistics
import time
from bisect import bisect_right
from collections import Counter
from datetime import datetime
from functools import cache
from zoneinfo import ZoneInfo

import orjson
import pytest

from ingest.parse import Limits, check_kind, parse_device_event, route
from kernel.contracts import ACTIVITY_EVENT_TYPES
from simulators.residents import (
    ANOMALY_KINDS,
    DEVICES,
    LEARNING_DAYS,
    Anomaly,
    ResidentHistory,
    SensorEvent,
    device_messages,
    home_devices,
    simulate_home,
)

START = datetime(2026, 1, 5, tzinfo=ZoneInfo("Europe/London")).timestamp()  # a Monday
DAYS = 60
HOMES = 100
H = 3600.0
ROOMS = {"bedroom", "bathroom", "kitchen", "lounge", "hall"}
KINDS = {
    "motion_sensor": {"motion"},
    "door_sensor": {"door_open", "door_closed"},
    "bed_sensor": {"bed_in", "bed_out"},
    "chair_sensor": {"chair_in", "chair_out"},
}


@cache
def city(seed: int = 11) -> tuple[ResidentHistory, ...]:
    return tuple(simulate_home(h, DAYS, seed, START) for h in range(HOMES))


def hour_of(h: ResidentHistory, ts: float) -> float:
    local = datetime.fromtimestamp(ts, ZoneInfo(h.zone))
    return local.hour + local.minute / 60 + local.second / 3600


def day_of(h: ResidentHistory, ts: float) -> int:
    return bisect_right(h.midnights, ts) - 1


def between(h: ResidentHistory, t0: float, t1: float) -> list[SensorEvent]:
    return [e for e in h.events if t0 <= e.ts < t1]


def abnormal_days(h: ResidentHistory) -> set[int]:
    """Days an anomaly or the hospital touches, and the day after each."""
    out: set[int] = set()
    for a0, a1 in [(a.start, a.end) for a in h.anomalies] + h.away:
        out.update(range(day_of(h, a0) - 1, day_of(h, a1 - 1) + 2))
    return out


def get_ups(h: ResidentHistory) -> dict[int, float]:
    """Each day's getting up: its first ``bed_out`` not followed by a ``bed_in`` within 30 min
    (a night's trip to the bathroom is)."""
    beds = [e for e in h.events if e.device == "bed"]
    out: dict[int, float] = {}
    for i, e in enumerate(beds):
        if e.kind != "bed_out":
            continue
        back = beds[i + 1] if i + 1 < len(beds) else None
        if back is not None and back.kind == "bed_in" and back.ts - e.ts < 0.5 * H:
            continue
        out.setdefault(day_of(h, e.ts), e.ts)
    return out


def usual_get_up(h: ResidentHistory) -> float:
    ups = get_ups(h)
    skip = abnormal_days(h)
    return statistics.median(hour_of(h, t) for d, t in ups.items() if d not in skip)


def anomalies(kind: str) -> list[tuple[ResidentHistory, Anomaly]]:
    return [(h, a) for h in city() for a in h.anomalies if a.kind == kind]


def test_the_same_arguments_give_the_same_history_and_another_seed_another() -> None:
    one = simulate_home(3, 30, 7, START)
    assert one == simulate_home(3, 30, 7, START)
    assert one.events and one.events != simulate_home(3, 30, 8, START).events
    assert one.events != simulate_home(4, 30, 7, START).events


def test_events_are_in_time_order_within_the_days_and_each_its_devices() -> None:
    for h in city():
        assert len(h.midnights) == DAYS + 1 and h.midnights[0] == START
        ts = [e.ts for e in h.events]
        assert ts == sorted(ts)
        assert ts[0] >= START and ts[-1] < h.midnights[-1]
        for e in h.events:
            assert e.room in ROOMS
            assert e.kind in KINDS[DEVICES[e.device]], e
            if e.device.startswith("pir-"):
                assert e.device == f"pir-{e.room}"


def test_a_day_is_a_few_hundred_events_and_a_city_is_generated_in_seconds() -> None:
    t0 = time.perf_counter()
    homes = [simulate_home(h, DAYS, 99, START) for h in range(HOMES)]
    took = time.perf_counter() - t0
    per_day = sum(len(h.events) for h in homes) / (HOMES * DAYS)
    assert 100 <= per_day <= 600, per_day
    assert took < 15.0, took


def test_anomalies_lie_in_their_days_after_the_learning_and_at_about_the_rate() -> None:
    homes = city()
    learnt = START + LEARNING_DAYS * 86400.0 - H  # a clock change at most
    kinds: Counter[str] = Counter()
    for h in homes:
        starts = [a.start for a in h.anomalies]
        assert starts == sorted(starts)
        for a in h.anomalies:
            kinds[a.kind] += 1
            assert learnt <= a.start <= a.end <= h.midnights[-1], a
            assert a.start >= h.midnights[LEARNING_DAYS]
            for b0, b1 in h.away:
                assert a.end <= b0 or a.start >= b1
    assert set(kinds) == set(ANOMALY_KINDS)
    rate = sum(kinds.values()) / (HOMES * (DAYS - LEARNING_DAYS))
    assert 0.025 <= rate <= 0.075, rate
    assert not any(simulate_home(h, DAYS, 11, START, anomaly_rate=0.0).anomalies for h in range(20))


def test_after_a_silent_fall_nothing_of_hers_until_help_comes() -> None:
    falls = anomalies("silent_fall")
    assert len(falls) >= 10
    for h, a in falls:
        assert a.end == h.midnights[day_of(h, a.start) + 1]  # the day's end
        assert a.end - a.start >= 2 * H
        assert between(h, a.start - 60, a.start), "she was moving about when she fell"
        after = between(h, a.start, a.end)
        if h.persona == "pet_owner":  # the pet goes on: a PIR now and then, no door, no bed
            assert all(e.kind == "motion" and e.room != "bedroom" for e in after)
            assert len(after) <= 8 * (a.end - a.start) / H
        else:
            assert after == []
        if a.end < h.midnights[-1]:
            assert between(h, a.end, a.end + H), "help comes"


def test_an_illness_is_days_of_less_activity_later_rising_and_recovering() -> None:
    ill = anomalies("illness")
    assert len(ill) >= 5
    for h, a in ill:
        per_day = Counter(day_of(h, e.ts) for e in h.events)
        skip = abnormal_days(h)
        usual = statistics.median(n for d, n in per_day.items() if d not in skip)
        first, last = day_of(h, a.start), day_of(h, a.end - 1)
        assert last - first >= 2
        assert per_day[first] < 0.75 * usual, (per_day[first], usual)
        assert per_day[first] < per_day[last]
        up = get_ups(h).get(first)
        assert up is not None and hour_of(h, up) > usual_get_up(h) + 0.5


def test_night_wandering_is_the_front_door_in_the_small_hours_and_only_then() -> None:
    """(Or help coming in after a fall.)"""
    walks = anomalies("night_wandering")
    assert len(walks) >= 5
    for h, a in walks:
        assert 0.5 <= hour_of(h, a.start) <= 5.5
        during = between(h, a.start, a.end + 1)
        assert during[0].kind == "bed_out" and during[-1].kind == "bed_in"
        assert {"door_open", "door_closed"} <= {e.kind for e in during if e.device == "door-front"}
        assert any(e.room == "hall" and e.kind == "motion" for e in during)
    for h in city():
        walked = [(a.start, a.end + 1) for a in h.anomalies if a.kind == "night_wandering"]
        walked += [(a.end, a.end + 2 * H) for a in h.anomalies if a.kind == "silent_fall"]
        for e in h.events:
            if e.device == "door-front" and 1.0 <= hour_of(h, e.ts) <= 5.0:
                assert any(s <= e.ts < u for s, u in walked), (h.home, e)


def test_a_missed_meal_leaves_the_kitchen_untouched_where_she_is_usually_there() -> None:
    missed = anomalies("missed_meal")
    assert len(missed) >= 5
    for h, a in missed:
        assert a.end - a.start == pytest.approx(2 * H)
        window = between(h, a.start - 0.75 * H, a.end)
        assert not [e for e in window if e.device == "door-fridge"]
        if h.persona != "pet_owner":  # the pet may wander into the kitchen
            assert not [e for e in window if e.room == "kitchen"]
        # on her ordinary days of the same kind (weekday or weekend) the kitchen is busy then
        d = day_of(h, a.start)
        weekend = datetime.fromtimestamp(a.start, ZoneInfo(h.zone)).weekday() >= 5
        skip = abnormal_days(h)
        busy = []
        for other in range(DAYS):
            m = h.midnights[other]
            day_weekend = datetime.fromtimestamp(m, ZoneInfo(h.zone)).weekday() >= 5
            if other in skip or other == d or day_weekend != weekend:
                continue
            t0 = m + (a.start - h.midnights[d])
            window = between(h, t0 - 0.75 * H, t0 + 2 * H)
            busy.append(any(e.device == "door-fridge" for e in window))
        assert sum(busy) >= 0.8 * len(busy), (h.home, sum(busy), len(busy))


def test_not_up_is_her_getting_up_hours_after_her_usual_time() -> None:
    late = anomalies("not_up")
    assert len(late) >= 5
    for h, a in late:
        d = day_of(h, a.start)
        up = get_ups(h)[d]
        assert up == a.end
        assert hour_of(h, up) >= usual_get_up(h) + 2.0
        assert abs(hour_of(h, a.start) - usual_get_up(h)) < 1.5  # it began at her usual time
        assert not [e for e in between(h, a.start, a.end) if e.device == "bed"]


def longest_bathroom(events: list[SensorEvent]) -> float:
    longest, since = 0.0, None
    for e in events:
        if e.room != "bathroom":
            since = None
            continue
        since = e.ts if since is None else since
        longest = max(longest, e.ts - since)
    return longest


def test_a_long_bathroom_is_hours_where_her_others_are_minutes() -> None:
    stays = anomalies("long_bathroom")
    assert len(stays) >= 5
    for h, a in stays:
        if h.persona == "pet_owner":
            continue
        assert a.end - a.start >= H
        assert {e.room for e in between(h, a.start, a.end)} == {"bathroom"}
        assert longest_bathroom(between(h, a.start - 60, a.end + 60)) >= 0.9 * H
        skip = abnormal_days(h)
        days: dict[int, list[SensorEvent]] = {}
        for e in h.events:
            days.setdefault(day_of(h, e.ts), []).append(e)
        ordinary = [longest_bathroom(es) for d, es in days.items() if d not in skip]
        assert max(ordinary) < 0.6 * H


def test_personas_differ_early_risers_rise_early_night_owls_late_and_pets_roam_at_night() -> None:
    homes = city()
    by = {
        p: [usual_get_up(h) for h in homes if h.persona == p] for p in ("early_riser", "night_owl")
    }
    assert by["early_riser"] and by["night_owl"]
    assert statistics.mean(by["night_owl"]) - statistics.mean(by["early_riser"]) >= 2.5
    assert max(by["early_riser"]) < min(by["night_owl"])

    def lounge_at_night(h: ResidentHistory) -> int:
        return sum(1 for e in h.events if e.room == "lounge" and 2.0 <= hour_of(h, e.ts) < 4.0)

    pets = [h for h in homes if h.persona == "pet_owner"]
    others = [h for h in homes if h.persona not in ("pet_owner", "night_owl")]
    assert pets and all(lounge_at_night(h) >= 10 for h in pets)
    assert all(lounge_at_night(h) == 0 for h in others)
    assert max(len(h.events) for h in homes if h.persona == "social") > 0
    visits = Counter(
        h.persona
        for h in homes
        for e in h.events
        if e.device == "door-front" and e.kind == "door_open" and 14.0 <= hour_of(h, e.ts) < 17
    )
    social = sum(1 for h in homes if h.persona == "social")
    regular = sum(1 for h in homes if h.persona == "regular")
    assert visits["social"] / social > 1.5 * visits["regular"] / regular


def test_a_hospital_stay_is_an_empty_house_for_days_and_no_anomaly() -> None:
    stays = [h for h in city() if h.persona == "hospital_stay"]
    assert stays
    for h in stays:
        assert len(h.away) == 1
        (b0, b1) = h.away[0]
        assert b1 - b0 >= 3 * 86400 - H
        assert [e for e in h.events if b0 < e.ts < b1] == []
        left, back = between(h, b0 - 120, b0 + 1), between(h, b1, b1 + 1)
        assert left[-1].device == "door-front" and left[-1].kind == "door_closed"
        assert back[0].device == "door-front" and back[0].kind == "door_open"
    others = [h for h in city() if h.persona != "hospital_stay"]
    assert all(h.away == [] for h in others)


def test_each_event_is_a_message_its_device_may_publish_and_ingest_takes() -> None:
    h = simulate_home(2, 3, 5, START)
    devices = home_devices("p002")
    messages = device_messages(h, "leeds", "p002")
    assert len(messages) == len(h.events)
    seqs: dict[str, list[int]] = {}
    for m in messages:
        topic = f"ck/leeds/dev/{m.device_id}/evt"
        assert m.topic == topic
        ev = parse_device_event(route(topic), topic, orjson.dumps(m.body), m.body["ts"], Limits())
        check_kind(devices[m.device_id], topic, ev.type)  # its kind sends it
        assert ev.type in ACTIVITY_EVENT_TYPES  # kept in the home's history, never dispatched
        seqs.setdefault(m.device_id, []).append(ev.seq)
    assert set(seqs) == set(devices)
    assert all(s == list(range(len(s))) for s in seqs.values())


def test_a_routine_change_is_seeded_off_by_default_and_from_its_day_a_day_centre_each_week() -> (
    None
):
    home = 4
    usual = city()[home]
    changed = simulate_home(home, DAYS, 11, START, routine_change=True)
    assert usual.changed_at is None
    assert changed.changed_at is not None
    assert changed == simulate_home(home, DAYS, 11, START, routine_change=True)
    day = usual.midnights.index(changed.changed_at)
    assert LEARNING_DAYS + 21 <= day <= DAYS - 14
    # her days before the change are those without it
    assert [e for e in changed.events if e.ts < changed.changed_at] == [
        e for e in usual.events if e.ts < changed.changed_at
    ]
    # from it on, one weekday each week: out through the front door from about 09:45 to 15:30
    out_days = {
        d
        for d in range(day, DAYS)
        if any(
            e.kind == "door_open"
            and e.device == "door-front"
            and 9.0 < hour_of(changed, e.ts) < 10.5
            for e in between(changed, changed.midnights[d], changed.midnights[d + 1])
        )
        and any(
            e.kind == "door_open"
            and e.device == "door-front"
            and 14.5 < hour_of(changed, e.ts) < 16.5
            for e in between(changed, changed.midnights[d], changed.midnights[d + 1])
        )
    }
    weekdays = {
        datetime.fromtimestamp(changed.midnights[d], ZoneInfo(changed.zone)).weekday()
        for d in out_days
    }
    assert len(out_days) >= (DAYS - day) // 7 - 1
    assert len(weekdays) == 1
    for d in out_days:  # lunch at the centre: no kitchen while she is out
        noon = [
            e
            for e in between(changed, changed.midnights[d] + 11 * H, changed.midnights[d] + 14 * H)
            if e.room == "kitchen" and changed.persona != "pet_owner"
        ]
        assert noon == []
