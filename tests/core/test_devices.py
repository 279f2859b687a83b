"""Home devices' health (``devices/``): kinds and the events they send, offline by last will or
silence, back online, battery with hysteresis, tamper, flapping; time passed in, no event loop."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.health import (
    FLAPPING,
    LOW_BATTERY,
    OFFLINE,
    TAMPER,
    AlarmStep,
    Clear,
    Health,
    HealthPolicy,
    Heard,
    Raise,
    first_heard,
    gone,
    heard,
    silent_at,
    tick,
)
from devices.kinds import EVENT_NOT_FOR_KIND, KINDS, UNKNOWN_KIND, event_refusal
from kernel.contracts import DEVICE_EVENT_TYPES

T0 = 1_700_000_000.0
P = HealthPolicy()
FALL = KINDS["fall_detector"]


def steps_of(judged: tuple[Health, tuple[AlarmStep, ...]]) -> list[tuple[str, str]]:
    return [(type(s).__name__, s.kind) for s in judged[1]]


def online(kind: str = "fall_detector", at: float = T0) -> Health:
    return first_heard(KINDS[kind], at)


# ---------------------------------------------------------------- kinds and their events


@pytest.mark.parametrize(
    ("kind", "event", "refusal"),
    [
        ("fall_detector", "fall", None),
        ("fall_detector", "sos", None),
        ("pendant", "sos", None),
        ("pendant", "fall", None),  # many pendants detect falls too
        ("dispenser", "dose_taken", None),
        ("dispenser", "dispenser_tamper", None),
        ("motion_sensor", "motion", None),
        ("door_sensor", "door_open", None),
        ("fall_detector", "dose_taken", EVENT_NOT_FOR_KIND),
        ("motion_sensor", "fall", EVENT_NOT_FOR_KIND),
        ("dispenser", "door_open", EVENT_NOT_FOR_KIND),
        ("vitals_monitor", "fall", EVENT_NOT_FOR_KIND),
        ("toaster", "fall", UNKNOWN_KIND),
        (None, "fall", UNKNOWN_KIND),
    ],
)
def test_an_event_its_kind_never_sends_is_refused(
    kind: str | None, event: str, refusal: str | None
) -> None:
    assert event_refusal(kind, event) == refusal


def test_every_event_type_of_the_contract_is_some_kind_s() -> None:
    sent = set().union(*(k.events for k in KINDS.values()))
    assert set(DEVICE_EVENT_TYPES) <= sent


def test_an_offline_fall_detector_is_worse_than_an_offline_motion_sensor() -> None:
    assert (KINDS["fall_detector"].offline, KINDS["pendant"].offline) == ("critical", "critical")
    assert KINDS["motion_sensor"].offline == "minor"


# ---------------------------------------------------------------- offline and back


@pytest.mark.parametrize(
    ("interval", "missed", "silent_for", "offline"),
    [
        (60.0, 3, 179.0, False),
        (60.0, 3, 180.0, True),
        (10.0, 3, 31.0, True),  # the device said it beats every 10 s
        (60.0, 1, 61.0, True),
    ],
)
def test_silence_past_the_missed_heartbeats_is_offline(
    interval: float, missed: int, silent_for: float, offline: bool
) -> None:
    p = replace(P, missed_beats=missed)
    h, _ = heard(online(), Heard(T0, heartbeat=True, interval_s=interval), p)
    after, steps = tick(h, T0 + silent_for, p)
    assert after.online is not offline
    assert [s.kind for s in steps] == ([OFFLINE] if offline else [])


def test_a_silent_fall_detector_is_a_critical_alarm_its_next_message_clears() -> None:
    h, _ = heard(online(), Heard(T0, heartbeat=True), P)
    h, steps = tick(h, T0 + 181, P)
    assert len(steps) == 1
    assert isinstance(steps[0], Raise)
    assert (steps[0].kind, steps[0].severity) == (OFFLINE, "critical")
    assert tick(h, T0 + 500, P)[1] == ()  # told once
    h, steps = heard(h, Heard(T0 + 600), P)  # its birth: any message will do
    assert (h.online, steps) == (True, (Clear(OFFLINE),))


def test_the_last_will_is_offline_at_once_and_a_second_one_changes_nothing() -> None:
    h, steps = gone(online("motion_sensor"), T0 + 5, P)
    assert steps == (Raise(OFFLINE, "minor", "the motion sensor went offline (its last will)"),)
    assert gone(h, T0 + 6, P) == (h, ())
    assert tick(h, T0 + 10_000, P)[1] == ()  # already offline: silence says nothing more


def test_a_worker_that_starts_watching_gives_a_whole_silence_from_then() -> None:
    h = replace(online(at=T0), watched_since=T0 + 1000)
    assert silent_at(h, P) == T0 + 1000 + 180
    assert tick(h, T0 + 1100, P)[1] == ()


# ---------------------------------------------------------------- battery and tamper


@pytest.mark.parametrize(
    ("readings", "expected"),
    [
        ([50, 30, 21], []),
        ([50, 19], [("Raise", "minor")]),
        ([19, 18, 21, 19, 22, 24], [("Raise", "minor")]),  # hovering: raised once
        ([19, 25], [("Raise", "minor"), ("Clear", "")]),
        ([19, 9, 12, 8], [("Raise", "minor"), ("Raise", "major")]),
        ([9, 15, 19], [("Raise", "major")]),  # never eases: still low
        ([9, 30], [("Raise", "major"), ("Clear", "")]),
        ([5, 100, 5], [("Raise", "major"), ("Clear", ""), ("Raise", "major")]),
    ],
)
def test_low_battery_with_hysteresis(readings: list[int], expected: list[tuple[str, str]]) -> None:
    h, told = online(), []
    for n, pct in enumerate(readings):
        h, steps = heard(h, Heard(T0 + n, heartbeat=True, battery=pct), P)
        for s in steps:
            assert s.kind == LOW_BATTERY
            told.append((type(s).__name__, s.severity if isinstance(s, Raise) else ""))
    assert told == expected


def test_tamper_raises_once_and_clears_when_the_device_says_so() -> None:
    h, steps = heard(online("dispenser"), Heard(T0, heartbeat=True, tamper=True), P)
    assert steps == (Raise(TAMPER, "major", "the medication dispenser was tampered with"),)
    h, steps = heard(h, Heard(T0 + 1, heartbeat=True, tamper=True), P)
    assert steps == ()
    h, steps = heard(h, Heard(T0 + 2, heartbeat=True), P)  # not said: nothing changes
    assert steps == ()
    assert heard(h, Heard(T0 + 3, heartbeat=True, tamper=False), P)[1] == (Clear(TAMPER),)


# ---------------------------------------------------------------- flapping


def flap(h: Health, times: int, start: float, every_s: float) -> tuple[Health, list[AlarmStep]]:
    """Drop (last will) and come back ``times`` times, ``every_s`` apart."""
    told: list[AlarmStep] = []
    at = start
    for _ in range(times):
        h, steps = gone(h, at, P)
        told += steps
        h, steps = heard(h, Heard(at + every_s / 2), P)
        told += steps
        at += every_s
    return h, told


def test_a_flapping_device_raises_one_flapping_alarm_not_a_flood_of_offline_ones() -> None:
    h, told = flap(online(), 20, T0, 20.0)
    raised = [s.kind for s in told if isinstance(s, Raise)]
    assert raised == [OFFLINE, OFFLINE, FLAPPING]  # the drops before it could be known to flap
    assert h.flapping
    assert [s for s in told if isinstance(s, Clear)] == [Clear(OFFLINE), Clear(OFFLINE)]


def test_a_flapping_device_that_steadies_settles_online_or_offline() -> None:
    h, _ = flap(online(), 5, T0, 20.0)
    h, _ = heard(h, Heard(h.changed_at, heartbeat=True, interval_s=P.settle_s), P)  # beats on
    assert tick(h, h.changed_at + P.settle_s - 1, P)[1] == ()
    steady, steps = tick(h, h.changed_at + P.settle_s, P)
    assert (steady.flapping, steps) == (False, (Clear(FLAPPING),))
    down, _ = gone(h, h.changed_at + 5, P)
    down = replace(down, last_seen=down.changed_at)
    settled, steps = tick(down, down.changed_at + P.settle_s, P)
    assert not settled.flapping
    assert [type(s).__name__ + ":" + s.kind for s in steps] == [
        "Clear:flapping",
        "Raise:device_offline",
    ]


def test_drops_spread_wider_than_the_window_are_no_flapping() -> None:
    h, told = flap(online(), 6, T0, P.flap_window_s / 2 + 1)
    assert not h.flapping
    assert [s.kind for s in told if isinstance(s, Raise)] == [OFFLINE] * 6


# ---------------------------------------------------------------- laws


def events(longest_gap_s: float) -> st.SearchStrategy[list[tuple[str, float, int, bool | None]]]:
    return st.lists(
        st.tuples(
            st.sampled_from(["beat", "birth", "will", "tick"]),
            st.floats(min_value=0.0, max_value=longest_gap_s),
            st.integers(min_value=0, max_value=100),
            st.sampled_from([None, True, False]),
        ),
        max_size=60,
    )


EVENTS = events(400.0)
WITHIN_A_WINDOW = events(P.flap_window_s / 61)


def run(kind: str, events: list[tuple[str, float, int, bool | None]]) -> list[AlarmStep]:
    """Feed a device ``events`` (each some seconds after the last); every alarm step."""
    h, now = online(kind), T0
    told: list[AlarmStep] = []
    for what, gap, battery, tamper in events:
        now += gap
        if what == "beat":
            h, steps = heard(h, Heard(now, True, battery, tamper), P)
        elif what == "birth":
            h, steps = heard(h, Heard(now), P)
        elif what == "will":
            h, steps = gone(h, now, P)
        else:
            h, steps = tick(h, now, P)
        told += steps
    return told


@given(st.sampled_from(sorted(KINDS)), EVENTS)
def test_an_alarm_is_raised_only_when_not_standing_and_cleared_only_when_standing(
    kind: str, events: list[tuple[str, float, int, bool | None]]
) -> None:
    standing: dict[str, bool] = {}
    for s in run(kind, events):
        if isinstance(s, Clear):
            assert standing.get(s.kind), f"{s.kind} cleared while not standing"
            standing[s.kind] = False
        else:
            assert s.kind == LOW_BATTERY or not standing.get(s.kind), f"{s.kind} raised twice"
            standing[s.kind] = True
        assert not (standing.get(OFFLINE) and standing.get(FLAPPING))


@given(st.sampled_from(sorted(KINDS)), WITHIN_A_WINDOW)
def test_offline_alarms_within_a_window_stay_under_the_flap_threshold(
    kind: str, events: list[tuple[str, float, int, bool | None]]
) -> None:
    offline_raised = [s for s in run(kind, events) if isinstance(s, Raise) and s.kind == OFFLINE]
    assert len(offline_raised) < P.flap_drops


@given(EVENTS, st.floats(min_value=0.0, max_value=100.0))
def test_any_message_brings_a_device_back_online(
    events: list[tuple[str, float, int, bool | None]], gap: float
) -> None:
    h, now = online(), T0
    for what, step, _, _ in events:
        now += step
        h = gone(h, now, P)[0] if what == "will" else tick(h, now, P)[0]
    assert heard(h, Heard(now + gap), P)[0].online
