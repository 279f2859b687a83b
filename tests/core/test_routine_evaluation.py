"""The evaluation core (``routines/evaluation.py``): matching alarms to labelled anomalies,
recall, delays, precision and false alarms per home-day, as tables of cases."""

from __future__ import annotations

import pytest

from routines.evaluation import Alarm, Truth, alarms, evaluate
from routines.models import Detection

H = 3600.0


def test_repeated_detections_are_one_alarm_at_the_first_moment() -> None:
    d = Detection("inactivity", 100.0, "no movement since 09:00")
    e = Detection("inactivity", 900.0, "no movement since 09:15")
    got = alarms(7, [(600.0, d), (300.0, d), (1200.0, e), (900.0, d)])
    assert [(a.home, a.kind, a.at, a.start) for a in got] == [
        (7, "inactivity", 300.0, 100.0),
        (7, "inactivity", 1200.0, 900.0),
    ]


MATCH_CASES = [
    ("inside the window", "silent_fall", "inactivity", 1 * H, 1, 1.0, 0),
    ("at its start", "silent_fall", "inactivity", 0.0, 1, 1.0, 0),
    ("at its end", "silent_fall", "inactivity", 10 * H, 1, 1.0, 0),
    ("before it began", "silent_fall", "inactivity", -60.0, 0, 0.0, 1),
    ("after it ended", "silent_fall", "inactivity", 10 * H + 1, 0, 0.0, 1),
    ("a kind that does not answer", "night_wandering", "missed_meal", 1 * H, 0, 0.0, 1),
    ("a fall in the bathroom", "silent_fall", "long_bathroom", 2 * H, 1, 1.0, 0),
    ("another home's anomaly", "silent_fall", "inactivity@2", 1 * H, 0, 0.0, 1),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "truth", "alarm", "at", "detected", "precision", "false"),
    MATCH_CASES,
    ids=[c[0] for c in MATCH_CASES],
)
def test_an_alarm_matches_an_anomaly_of_its_home_and_kind_within_its_window(
    name: str, truth: str, alarm: str, at: float, detected: int, precision: float, false: int
) -> None:
    kind, _, home = alarm.partition("@")
    f = evaluate(
        [Alarm(int(home or 1), kind, at, at)], [Truth(1, truth, 0.0, 10 * H)], home_days=10
    )
    assert f.by_anomaly[truth].detected == detected
    assert f.by_alarm[kind].precision == precision
    assert f.false_alarms == false
    assert f.false_alarms_per_home_day == false / 10


def test_recall_and_delays_over_many_homes() -> None:
    truths = [Truth(h, "silent_fall", 1000.0 * h, 1000.0 * h + 10 * H) for h in range(1, 11)]
    raised = [Alarm(h, "inactivity", 1000.0 * h + 600.0 * h, 0.0) for h in range(1, 9)]
    raised += [Alarm(1, "inactivity", 1000.0 + 5 * H, 1.0)]  # a later alarm of a found fall
    f = evaluate(raised, truths, home_days=100)
    fall = f.by_anomaly["silent_fall"]
    assert (fall.anomalies, fall.detected, fall.recall) == (10, 8, 0.8)
    assert fall.median_delay_s == pytest.approx(2700.0)  # delays 600..4800 s: median 2700
    assert fall.p90_delay_s == pytest.approx(4380.0)
    assert f.inactivity == fall
    assert f.false_alarms == 0
    assert f.by_alarm["inactivity"].precision == 1.0


def test_no_anomalies_and_no_alarms_give_no_figures_rather_than_zero() -> None:
    f = evaluate([], [], home_days=0)
    assert f.by_anomaly["silent_fall"].recall is None
    assert f.inactivity.median_delay_s is None
    assert f.false_alarms_per_home_day is None
    assert f.by_alarm == {}


def test_false_alarms_per_home_day() -> None:
    raised = [Alarm(h, "inactivity", 50.0 * i, 0.0) for h in range(4) for i in range(3)]
    f = evaluate(raised, [Truth(0, "silent_fall", 0.0, 60.0)], home_days=40)
    assert f.false_alarms == 10
    assert f.false_alarms_per_home_day == 0.25
    assert f.by_alarm["inactivity"].precision == pytest.approx(2 / 12)
