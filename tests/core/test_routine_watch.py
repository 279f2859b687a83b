"""Watching a home live, as pure code: what a scoring calls for given the alarms standing,
a home's events deduplicated and kept in time order whatever order they come in, the room an
event is in, and a fitted model kept and read back whole."""

from __future__ import annotations

from dataclasses import fields
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from routines.features import Reading, Timeline
from routines.models import Detection, HourlyBaseline
from routines.persist import params_and_arrays, restored
from routines.watch import KEEP_S, Home, Standing, judge, room_of
from tests.routine_days import her_day

ZONE = ZoneInfo("Europe/London")
T = 1_800_000_000.0


def d(kind: str, start: float) -> Detection:
    return Detection(kind, start, f"{kind} since {start}")  # type: ignore[arg-type]


def s(kind: str, start: float, raised_at: float = T, asked: bool = False) -> Standing:
    return Standing(f"a-{kind}", kind, start, raised_at, asked)


@pytest.mark.parametrize(
    ("standing", "detections", "now", "raised", "cleared", "asked"),
    [
        # nothing standing, nothing seen
        ([], [], T, [], [], []),
        # a new detection raises
        ([], [d("inactivity", T - 100)], T, [("inactivity", T - 100)], [], []),
        # the same episode again: nothing new
        ([s("inactivity", T - 100)], [d("inactivity", T - 100)], T + 60, [], [], []),
        # a new episode (she moved, then stopped again) raises again
        (
            [s("inactivity", T - 100)],
            [d("inactivity", T + 30)],
            T + 60,
            [("inactivity", T + 30)],
            [],
            [],
        ),
        # standing, not seen now: its condition ended
        ([s("missed_meal", T - 100)], [], T, [], ["missed_meal"], []),
        # inactivity standing long enough asks for an incident...
        ([s("inactivity", T - 100)], [d("inactivity", T - 100)], T + 600, [], [], ["inactivity"]),
        # ...once an episode
        (
            [s("inactivity", T - 100, asked=True)],
            [d("inactivity", T - 100)],
            T + 6000,
            [],
            [],
            [],
        ),
        # a missed meal never opens an incident, however long
        ([s("missed_meal", T - 100)], [d("missed_meal", T - 100)], T + 6000, [], [], []),
        # not up, and a long stay in the bathroom, may be a fall: they do
        ([s("not_up", T - 100)], [d("not_up", T - 100)], T + 600, [], [], ["not_up"]),
        # two detections of one kind: the first speaks
        ([], [d("not_up", T - 5), d("not_up", T - 9)], T, [("not_up", T - 5)], [], []),
    ],
)
def test_what_a_scoring_calls_for(
    standing: list[Standing],
    detections: list[Detection],
    now: float,
    raised: list[tuple[str, float]],
    cleared: list[str],
    asked: list[str],
) -> None:
    steps = judge({x.kind: x for x in standing}, detections, now, incident_after_s=600.0)
    assert [(x.kind, x.start) for x in steps.raise_] == raised
    assert steps.clear == cleared
    assert [x.kind for x in steps.open_incident] == asked
    assert bool(steps) == bool(raised or cleared or asked)


@pytest.mark.parametrize(
    ("said", "device_kind", "room"),
    [
        ("kitchen", "motion_sensor", "kitchen"),
        ("bathroom", None, "bathroom"),
        (None, "door_sensor", "hall"),
        (None, "bed_sensor", "bedroom"),
        (None, "chair_sensor", "lounge"),
        ("kitchen", "door_sensor", "kitchen"),  # the fridge's contact says where it is
        (None, "motion_sensor", None),  # a motion sensor must say its room
        ("attic", "motion_sensor", None),
        (7, "motion_sensor", None),
        (None, None, None),
    ],
)
def test_the_room_of_an_event(said: object, device_kind: str | None, room: str | None) -> None:
    assert room_of(said, device_kind) == room


def test_a_home_takes_each_event_once_and_keeps_them_in_time_order() -> None:
    home = Home(ZONE)
    assert home.add("e1", Reading(T, "kitchen", "motion"))
    assert home.add("e2", Reading(T + 60, "lounge", "motion"))
    first = home.timeline(T + 60)
    assert first.ts.tolist() == [T, T + 60]
    assert not home.add("e1", Reading(T, "kitchen", "motion"))  # read again: one event
    assert home.add("e3", Reading(T + 120, "hall", "motion"))
    assert home.add("e0", Reading(T - 60, "bedroom", "bed_out"))  # late: rebuilt in order
    tl = home.timeline(T + 120)
    assert tl.ts.tolist() == [T - 60, T, T + 60, T + 120]
    assert [int(h) for h in tl.hour] == [
        int(h)
        for h in Timeline.of(
            [Reading(t, "hall", "motion") for t in (T - 60, T, T + 60, T + 120)], ZONE
        ).hour
    ]


def test_a_home_forgets_what_is_older_than_it_keeps() -> None:
    home = Home(ZONE)
    home.add("old", Reading(T, "kitchen", "motion"))
    home.add("new", Reading(T + KEEP_S, "kitchen", "motion"))
    tl = home.timeline(T + KEEP_S + 10)
    assert tl.ts.tolist() == [T + KEEP_S]
    assert "old" not in home.seen and "new" in home.seen


def _history(days: int) -> Timeline:
    from datetime import date, timedelta

    first = date(2026, 10, 1)
    rows = []
    for k in range(days):
        for t, device, kind in her_day(first + timedelta(days=k), ZONE):
            room = device.removeprefix("pir-") if device.startswith("pir-") else "bedroom"
            rows.append(Reading(t, room, kind))
    return Timeline.of(rows, ZONE)


def test_a_fitted_model_is_kept_and_read_back_whole() -> None:
    tl = _history(20)
    until = float(tl.ts[-1]) + 6 * 3600
    model = HourlyBaseline()
    model.fit(tl, until)
    params, arrays = params_and_arrays(model)
    back = restored(params, arrays)
    assert back.days == model.days == 20
    learnt = [f.name for f in fields(model) if isinstance(getattr(model, f.name), np.ndarray)]
    assert len(learnt) >= 5
    for name in learnt:
        ours, kept = getattr(model, name), getattr(back, name)
        assert ours.dtype == kept.dtype
        assert np.array_equal(kept, ours, equal_nan=ours.dtype.kind == "f")
    later = until + 14 * 3600  # the next evening, and she never got up
    said = model.score(tl, later)
    assert [x.kind for x in said] == ["not_up"]
    assert back.score(tl, later) == said


def test_a_kept_model_is_read_without_running_code() -> None:
    """Arrays of objects would need pickle to read: a stored model cannot carry any."""
    model = HourlyBaseline()
    model.fit(_history(20), float(_history(20).ts[-1]) + 3600)
    params, _ = params_and_arrays(model)
    import io

    buffer = io.BytesIO()
    np.savez(buffer, still_at=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        restored(params, buffer.getvalue())
