"""Vitals as pure code (``vitals/``): the spike filter, thresholds held for a duration with
hysteresis, a patient's samples judged in order, and minute aggregates; tables of cases and
laws over any series, no event loop."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitals.filters import POLICIES, SpikeFilter
from vitals.measures import MEASURES, Measure, implausible, plausible
from vitals.patient import PatientVitals
from vitals.thresholds import DEFAULTS, Hold, Threshold, for_patient, step

TACHY = Threshold("tachycardia", "hr", "above", 120.0, 300.0, clear_at=110.0)
T0 = 1_800_000_000.0


def judge_all(measure: Measure, values: list[float], every_s: float = 30.0) -> list[str]:
    f = SpikeFilter(measure, POLICIES[measure])
    return [f.judge(v, T0 + i * every_s) for i, v in enumerate(values)]


# ---------------------------------------------------------------- the spike filter

FILTER_CASES = [
    # (measure, values, verdicts)
    ("hr", [72, 73, 71, 180, 72], ["kept", "kept", "kept", "spike", "kept"]),
    ("hr", [72, 73, 180, 181, 72], ["kept", "kept", "spike", "kept", "kept"]),  # half: a level
    ("hr", [72, 72, 72, 72, 72, 130, 130, 130], ["kept"] * 5 + ["spike", "spike", "kept"]),
    ("hr", [72, 74, 70, 73, 85], ["kept"] * 5),  # within the floor: a heart speeding up
    ("hr", [180, 72, 73], ["kept", "kept", "kept"]),  # nothing to judge the first against
    ("hr", [72, 300, 72], ["kept", "impossible", "kept"]),
    ("spo2", [97, 96, 97, 81, 97], ["kept", "kept", "kept", "spike", "kept"]),
    ("spo2", [97, 97, 97, 97, 97, 88, 88, 88], ["kept"] * 5 + ["spike", "spike", "kept"]),
    ("temp", [36.6, 36.7, 36.6, 31.0, 36.6], ["kept", "kept", "kept", "spike", "kept"]),
    ("temp", [36.6, 36.7, 36.8, 37.2, 37.5], ["kept"] * 5),  # a fever coming on
]


@pytest.mark.parametrize(("measure", "values", "verdicts"), FILTER_CASES)
def test_what_the_filter_keeps(measure: Measure, values: list[float], verdicts: list[str]) -> None:
    assert judge_all(measure, values) == verdicts


def test_a_long_gap_starts_the_window_again() -> None:
    f = SpikeFilter("hr", POLICIES["hr"])
    for i, v in enumerate([72, 72, 72, 72]):
        assert f.judge(v, T0 + i * 30) == "kept"
    assert f.judge(130, T0 + 90 + 3600) == "kept"  # an hour later: nothing to judge it against


@pytest.mark.parametrize(
    ("values", "wrong"),
    [
        ({"hr": 72.0, "spo2": 97.0}, []),
        ({"hr": 19.0}, ["hr"]),
        ({"spo2": 101.0}, ["spo2"]),
        ({"temp": math.nan}, ["temp"]),
        ({"bp_sys": 120.0, "bp_dia": 80.0}, []),
        ({"bp_sys": 80.0, "bp_dia": 90.0}, ["bp_dia"]),  # diastolic above systolic
    ],
)
def test_what_no_living_person_reads(values: dict[Measure, float], wrong: list[str]) -> None:
    assert implausible(values) == wrong


# ---------------------------------------------------------------- thresholds held for a time


def run_rule(rule: Threshold, series: list[tuple[float, float]]) -> list[tuple[float, str]]:
    """(seconds after T0, change) for every change the series makes."""
    hold, out = Hold(), list[tuple[float, str]]()
    for at, value in series:
        hold, change = step(rule, hold, value, T0 + at)
        if change is not None:
            out.append((at, change))
    return out


def every(seconds: float, values: Sequence[float], start: float = 0.0) -> list[tuple[float, float]]:
    return [(start + i * seconds, v) for i, v in enumerate(values)]


RULE_CASES = [
    # (series, changes): heart rate above 120 for 5 minutes, clear at 110 held a minute
    (every(60, [130] * 6), [(300.0, "raise")]),
    (every(60, [130] * 5), []),  # four minutes held: not yet
    (every(60, [130, 130, 130, 118, 130, 130, 130]), []),  # broken at 118, not 5 min since
    (every(60, [121] * 6), [(300.0, "raise")]),
    (every(60, [120] * 10), []),  # at the limit is not above it
    (every(60, [130] * 6 + [115] * 5), [(300.0, "raise")]),  # hysteresis: 115 does not clear
    (every(60, [130] * 6 + [105, 105]), [(300.0, "raise"), (420.0, "clear")]),
    (every(60, [130] * 6 + [105, 125, 105]), [(300.0, "raise")]),  # back up: the clear waits
    (
        every(60, [130] * 6 + [105, 105] + [130] * 6),
        [(300, "raise"), (420, "clear"), (780, "raise")],
    ),
    ([(0, 130), (100, 130), (400, 130), (500, 130)], []),  # 300 s of silence breaks the hold
    (every(10, [130] * 31), [(300.0, "raise")]),  # raised once, however many samples follow
]


@pytest.mark.parametrize(("series", "changes"), RULE_CASES)
def test_when_a_threshold_raises_and_clears(
    series: list[tuple[float, float]], changes: list[tuple[float, str]]
) -> None:
    assert run_rule(TACHY, series) == changes


def test_a_rule_with_no_hold_raises_on_the_first_value_beyond_it() -> None:
    crisis = Threshold("hypertension", "bp_sys", "above", 180, 0, clear_at=160, clear_hold_s=0)
    assert run_rule(crisis, [(0, 150), (60, 190), (120, 170), (180, 150)]) == [
        (60, "raise"),
        (180, "clear"),
    ]


def test_a_clear_on_the_wrong_side_of_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="safe side"):
        Threshold("tachycardia", "hr", "above", 120, 300, clear_at=125)
    with pytest.raises(ValueError, match="safe side"):
        Threshold("bradycardia", "hr", "below", 40, 300, clear_at=35)


def test_a_patient_overrides_turns_off_and_adds_rules() -> None:
    her_own = Threshold("tachycardia", "hr", "above", 100.0, 600.0, clear_at=95.0)
    crisis = Threshold("hypertension", "bp_sys", "above", 180.0, 0.0, clear_at=160.0)
    rules = for_patient({"tachycardia": her_own, "fever": None, "hypertension": crisis})
    kinds = [r.kind for r in rules]
    assert kinds == ["tachycardia", "bradycardia", "low_spo2", "hypothermia", "hypertension"]
    assert rules[0] is her_own
    assert for_patient({}) == DEFAULTS


def test_describe() -> None:
    assert TACHY.describe() == "heart rate above 120 bpm for 5 min"


# ---------------------------------------------------------------- a patient's samples


def patient(active: tuple[str, ...] = ()) -> PatientVitals:
    return PatientVitals.start(DEFAULTS, active)


def feed(p: PatientVitals, series: list[tuple[float, float]]) -> list[tuple[float, str, str]]:
    out: list[tuple[float, str, str]] = []
    for at, hr in series:
        for c in p.observe(T0 + at, {"hr": hr}).changes:
            out.append((at, c.kind, c.change))
    return out


def test_a_single_spike_is_no_tachycardia() -> None:
    p = patient()
    series = every(30, [72, 74, 71, 73, 180, 72, 73] + [72] * 20)
    assert feed(p, series) == []


def test_a_sustained_tachycardia_raises_once_and_clears_when_it_ends() -> None:
    p = patient()
    series = every(30, [72] * 5 + [135] * 14 + [95] * 5)
    # 135 from 150 s: the first two are judged spikes until they are half the window, so the
    # hold starts at 210 s; 95 from 570 s: the same, so the clear's minute starts at 630 s
    assert feed(p, series) == [(510.0, "tachycardia", "raise"), (690.0, "tachycardia", "clear")]
    assert p.active() == []


def test_a_patient_taken_over_with_an_active_alarm_clears_it_when_readings_say_so() -> None:
    p = patient(active=("tachycardia",))
    assert feed(p, every(30, [80, 80, 80])) == [(60.0, "tachycardia", "clear")]


def test_a_sample_no_later_than_the_last_is_history_only() -> None:
    p = patient()
    assert not p.observe(T0 + 60, {"hr": 72}).late
    late = p.observe(T0 + 30, {"hr": 250})
    assert late.late and late.kept == {"hr": 250} and late.changes == ()
    assert p.observe(T0 + 60, {"hr": 72}).late  # the same sample again


def test_new_rules_keep_where_her_kinds_stand() -> None:
    p = patient(active=("tachycardia",))
    stricter = Threshold("tachycardia", "hr", "above", 100.0, 300.0, clear_at=95.0)
    p.retune(for_patient({"tachycardia": stricter, "bradycardia": None}))
    assert p.active() == ["tachycardia"]
    assert "bradycardia" not in p.holds
    assert feed(p, every(30, [97, 97, 97, 97])) == []  # 97 clears the old rule, not this one


def test_dropped_values_are_named() -> None:
    p = patient()
    for i in range(4):
        p.observe(T0 + i * 30, {"hr": 72, "spo2": 97})
    judged = p.observe(T0 + 120, {"hr": 72, "spo2": 70})
    assert judged.kept == {"hr": 72} and judged.dropped == ("spo2",)


# ---------------------------------------------------------------- laws

steady_hr = st.lists(st.floats(60, 100), min_size=8, max_size=60)
any_series = st.lists(
    st.tuples(st.floats(1, 400), st.floats(20, 250)), min_size=1, max_size=80
)  # (seconds since the last, bpm)


@given(any_series)
@settings(max_examples=200, deadline=None)
def test_raise_and_clear_alternate_starting_with_raise(gaps: list[tuple[float, float]]) -> None:
    changes = [c for _, c in run_rule(TACHY, timed(gaps))]
    assert changes == ["raise", "clear"] * (len(changes) // 2) + ["raise"] * (len(changes) % 2)


def timed(gaps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    at, series = 0.0, []
    for gap, value in gaps:
        at += gap
        series.append((at, value))
    return series


@given(any_series)
@settings(max_examples=200, deadline=None)
def test_a_raise_follows_a_breach_held_for_the_whole_hold(gaps: list[tuple[float, float]]) -> None:
    series = timed(gaps)
    for raised_at, change in run_rule(TACHY, series):
        if change != "raise":
            continue
        upto = [(t, v) for t, v in series if t <= raised_at]
        start = len(upto) - 1  # back to the first sample of the unbroken breach
        while (
            start > 0
            and TACHY.breached(upto[start - 1][1])
            and upto[start][0] - upto[start - 1][0] <= TACHY.max_gap_s
        ):
            start -= 1
        assert all(TACHY.breached(v) for _, v in upto[start:])
        assert raised_at - upto[start][0] >= TACHY.hold_s


@given(steady_hr, st.integers(0, 59), st.floats(20, 250))
@settings(max_examples=200, deadline=None)
def test_one_spike_in_a_steady_heart_raises_nothing(
    steady: list[float], where: int, spike: float
) -> None:
    values = list(steady)
    values.insert(min(where, len(values)), spike)
    p = patient()
    assert feed(p, every(30, values)) == []


@given(st.sampled_from(MEASURES), st.floats(allow_nan=True, allow_infinity=True))
def test_a_value_the_filter_keeps_is_plausible(measure: Measure, value: float) -> None:
    f = SpikeFilter(measure, POLICIES[measure])
    if f.judge(value, T0) == "kept":
        assert plausible(measure, value)
