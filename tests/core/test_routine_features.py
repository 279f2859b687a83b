"""Routine features as pure code (``routines/features.py``): tables of small hand-made days,
times of day read in the home's zone, across both changes of clocks."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from routines.features import (
    ROOM,
    Reading,
    Timeline,
    day_bounds,
    day_window,
    dwells,
    first_movement,
    hourly_activity,
    night_activity,
    resident_day,
    since_last_movement,
)

LONDON = ZoneInfo("Europe/London")
DAY = date(2026, 6, 10)
SPRING = date(2026, 3, 29)  # clocks go forward at 01:00 GMT
AUTUMN = date(2026, 10, 25)  # clocks go back at 02:00 BST


def at(day: date, hh: int, mm: int = 0, zone: ZoneInfo = LONDON) -> float:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=zone).timestamp()


def tl(*events: tuple[float, str, str], zone: ZoneInfo = LONDON) -> Timeline:
    return Timeline.of([Reading(t, r, k) for t, r, k in events], zone)


def test_day_bounds_are_23_or_25_hours_when_the_clocks_change() -> None:
    lengths = [
        (d, (day_bounds(d, LONDON)[1] - day_bounds(d, LONDON)[0]) / 3600.0)
        for d in (date(2026, 3, 28), DAY, date(2026, 10, 24))
    ]
    assert lengths == [(date(2026, 3, 28), 23.0), (DAY, 24.0), (date(2026, 10, 24), 25.0)]


@pytest.mark.parametrize(
    ("ts", "day"),
    [
        (at(DAY, 3, 59), date(2026, 6, 9)),
        (at(DAY, 4, 0), DAY),
        (at(DAY, 23, 30), DAY),
        (at(SPRING, 3, 30), date(2026, 3, 28)),
        (at(AUTUMN, 4, 0), AUTUMN),
    ],
)
def test_a_moment_belongs_to_the_residents_day_from_four_local(ts: float, day: date) -> None:
    assert resident_day(ts, LONDON) == day


def test_hourly_activity_counts_by_local_hour_and_room_in_summer_and_winter() -> None:
    winter = date(2026, 12, 1)
    t = tl(
        (at(DAY, 7, 5), "kitchen", "motion"),
        (at(DAY, 7, 50), "kitchen", "door_open"),
        (at(DAY, 8, 1), "lounge", "chair_in"),
        (at(winter, 7, 5), "bathroom", "motion"),
    )
    summer = hourly_activity(t, *day_bounds(DAY, LONDON))
    assert summer[7, ROOM["kitchen"]] == 2
    assert summer[8, ROOM["lounge"]] == 1
    assert summer.sum() == 3
    dec = hourly_activity(t, *day_bounds(winter, LONDON))
    assert dec[7, ROOM["bathroom"]] == 1
    assert dec.sum() == 1


def test_an_hour_repeated_when_the_clocks_go_back_counts_both_times_in_its_hour() -> None:
    one = datetime(2026, 10, 25, 1, 30, tzinfo=LONDON)
    t = tl(
        (one.timestamp(), "hall", "motion"),
        (one.replace(fold=1).timestamp(), "hall", "motion"),
    )
    counts = hourly_activity(t, at(AUTUMN, 0), at(AUTUMN, 12))
    assert counts[1, ROOM["hall"]] == 2


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(DAY, 6, 0), None),
        (at(DAY, 7, 0), 0.0),
        (at(DAY, 9, 0), 7200.0),
        (at(DAY, 11, 0), 3600.0),
    ],
)
def test_time_since_last_movement_sees_nothing_after_now(now: float, expected: float) -> None:
    t = tl((at(DAY, 7), "kitchen", "motion"), (at(DAY, 10), "lounge", "motion"))
    assert since_last_movement(t, now) == expected


FIRST_CASES = [
    ("bed_out at 07:10", [(7, 10, "bedroom", "bed_out"), (7, 12, "bathroom", "motion")], (7, 10)),
    ("kitchen first", [(6, 40, "kitchen", "motion"), (7, 0, "bedroom", "bed_out")], (6, 40)),
    ("bedroom only is not up", [(6, 0, "bedroom", "motion"), (8, 5, "hall", "motion")], (8, 5)),
    ("03:00 is last night", [(3, 0, "hall", "motion"), (9, 0, "kitchen", "motion")], (9, 0)),
    ("not up at all", [(3, 0, "kitchen", "motion")], None),
    ("loo and back to bed", [(5, 20, "bedroom", "bed_out"), (5, 22, "bathroom", "motion"),
        (5, 27, "bedroom", "bed_in"), (9, 50, "bedroom", "bed_out")], (9, 50)),
    ("back to bed after 40 min", [(6, 0, "bedroom", "bed_out"), (6, 40, "bedroom", "bed_in")],
        (6, 0)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "events", "up"), FIRST_CASES, ids=[c[0] for c in FIRST_CASES])
def test_first_movement_of_the_day(
    name: str, events: list[tuple[int, int, str, str]], up: tuple[int, int] | None
) -> None:
    t = tl(*((at(DAY, h, m), room, kind) for h, m, room, kind in events))
    assert first_movement(t, DAY) == (None if up is None else at(DAY, *up))


def test_first_movement_is_read_in_local_time_on_the_day_clocks_go_forward() -> None:
    t = tl((at(SPRING, 3, 30), "kitchen", "motion"), (at(SPRING, 7, 0), "kitchen", "motion"))
    assert first_movement(t, SPRING) == at(SPRING, 7, 0)
    tokyo = ZoneInfo("Asia/Tokyo")
    t = tl((at(DAY, 5, 0, tokyo), "hall", "motion"), zone=tokyo)
    assert first_movement(t, DAY) == at(DAY, 5, 0, tokyo)


def test_first_movement_does_not_see_past_now() -> None:
    t = tl((at(DAY, 9), "kitchen", "motion"))
    assert first_movement(t, DAY, now=at(DAY, 8)) is None
    assert first_movement(t, DAY, now=at(DAY, 9)) == at(DAY, 9)


NIGHT_CASES = [
    ("quiet", [(22, 0, "kitchen", "motion", -1), (6, 30, "kitchen", "motion", 0)], (0, 0)),
    ("loo trip", [(2, 0, "bathroom", "motion", 0), (2, 0, "bedroom", "bed_out", 0)], (1, 0)),
    ("out the front door", [(1, 0, "hall", "motion", 0), (1, 1, "hall", "door_open", 0)], (2, 1)),
    ("fridge is not the front door", [(0, 30, "kitchen", "door_open", 0)], (1, 0)),
    ("23:30 belongs to the next morning", [(23, 30, "hall", "door_open", -1)], (1, 1)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "events", "want"), NIGHT_CASES, ids=[c[0] for c in NIGHT_CASES])
def test_night_activity_and_front_door(
    name: str, events: list[tuple[int, int, str, str, int]], want: tuple[int, int]
) -> None:
    from datetime import timedelta

    t = tl(*((at(DAY + timedelta(days=off), h, m), r, k) for h, m, r, k, off in events))
    night = night_activity(t, DAY)
    assert (night.active_events, night.front_door_openings) == want


def test_bathroom_dwell_runs_to_the_next_room_or_stays_open_at_now() -> None:
    t = tl(
        (at(DAY, 7, 0), "bathroom", "motion"),
        (at(DAY, 7, 5), "bathroom", "motion"),
        (at(DAY, 7, 20), "kitchen", "motion"),
        (at(DAY, 9, 0), "bathroom", "motion"),
    )
    got = dwells(t, "bathroom", at(DAY, 4), at(DAY, 10, 30))
    assert [(d.start, d.seconds, d.open) for d in got] == [
        (at(DAY, 7), 1200.0, False),
        (at(DAY, 9), 5400.0, True),
    ]
    kitchen = dwells(t, "kitchen", at(DAY, 4), at(DAY, 10, 30))
    assert [(d.seconds, d.open) for d in kitchen] == [(6000.0, False)]


def test_a_day_window_of_a_still_morning_differs_from_a_busy_one() -> None:
    busy = tl(
        (at(DAY, 7), "bedroom", "bed_out"),
        (at(DAY, 7, 10), "bathroom", "motion"),
        (at(DAY, 7, 40), "kitchen", "motion"),
        (at(DAY, 9, 50), "lounge", "motion"),
    )
    still = tl((at(DAY, 7), "bedroom", "bed_out"))
    b, s = day_window(busy, DAY, at(DAY, 10)), day_window(still, DAY, at(DAY, 10))
    assert b.shape == s.shape
    assert b[6] == pytest.approx(10 / 60)  # stillness in hours
    assert s[6] == pytest.approx(3.0)
    assert np.all(np.isfinite(b)) and np.all(np.isfinite(s))
