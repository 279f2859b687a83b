"""Alarms (``alarms/``): the lifecycle and the escalation ladder, time passed in; no event loop."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alarms.ladder import (
    DEFAULT_LADDERS,
    WHOLE_LADDER_WITHIN_S,
    Ladder,
    Step,
    check,
    ladder_for,
    parse_ladder,
    spelled,
)
from alarms.lifecycle import SEVERITIES, AlarmBook, Severity, acknowledged, cleared, raised

T0 = 1_700_000_000.0


def test_a_repeat_counts_on_the_active_alarm_and_keeps_the_worse_severity() -> None:
    first = raised(None, "device:d1", "tamper", "minor", T0)
    again = raised(first, "device:d1", "tamper", "critical", T0 + 5)
    late = raised(again, "device:d1", "tamper", "warning", T0 + 3)  # out of order
    assert (first.count, first.raised_at, first.status) == (1, T0, "active_unack")
    assert (again.count, again.severity, again.last_at) == (2, "critical", T0 + 5)
    assert (late.count, late.severity, late.last_at, late.raised_at) == (3, "critical", T0 + 5, T0)


def test_after_it_cleared_the_same_condition_raises_a_new_alarm() -> None:
    first = cleared(raised(None, "device:d1", "offline", "major", T0), "condition", T0 + 60)
    assert (first.active, first.status, first.cleared_by) == (False, "cleared_unack", "condition")
    second = raised(first, "device:d1", "offline", "major", T0 + 90)
    assert (second.count, second.raised_at, second.active) == (1, T0 + 90, True)


def test_a_repeat_of_another_source_or_kind_is_refused() -> None:
    alarm = raised(None, "device:d1", "tamper", "minor", T0)
    with pytest.raises(ValueError):
        raised(alarm, "device:d2", "tamper", "minor", T0)


def test_the_first_acknowledgement_and_the_first_clearing_stand() -> None:
    alarm = raised(None, "incident:i1", "incident_escalated", "critical", T0)
    taken = acknowledged(alarm, "dispatcher:ann", T0 + 10)
    assert acknowledged(taken, "dispatcher:bob", T0 + 20) == taken
    done = cleared(taken, "dispatcher:bob", T0 + 30)
    assert cleared(done, "condition", T0 + 40) == done
    assert (done.status, done.acknowledged_by, done.cleared_by) == (
        "cleared_ack",
        "dispatcher:ann",
        "dispatcher:bob",
    )


OPS = st.lists(
    st.tuples(
        st.sampled_from(["raise", "clear"]),
        st.sampled_from(["device:a", "device:b"]),
        st.sampled_from(["tamper", "offline"]),
        st.sampled_from(SEVERITIES),
    ),
    max_size=60,
)


@given(OPS)
def test_never_two_active_alarms_for_one_source_and_kind(
    ops: list[tuple[str, str, str, str]],
) -> None:
    book = AlarmBook()
    raises: dict[tuple[str, str], int] = {}
    for now, (op, source, kind, severity) in enumerate(ops):
        if op == "raise":
            alarm = book.raise_(source, kind, severity, T0 + now)  # type: ignore[arg-type]
            raises[source, kind] = alarm.count
        else:
            book.clear(source, kind, "condition", T0 + now)
            raises.pop((source, kind), None)
        keys = [(a.source, a.kind) for a in book.active()]
        assert len(keys) == len(set(keys))
        # an active alarm counts the raises since it was last cleared
        assert {(a.source, a.kind): a.count for a in book.active()} == raises


# ---------------------------------------------------------------- the ladder


def test_the_ladder_climbs_rung_by_rung_until_someone_acknowledges() -> None:
    ladder = DEFAULT_LADDERS["critical"]
    alarm = raised(None, "incident:i1", "incident_escalated", "critical", T0)
    assert [s.rung for s in ladder.due(alarm, T0)] == ["dispatchers"]
    assert [s.rung for s in ladder.due(alarm, T0 + 45)] == ["dispatchers", "on_call", "external"]
    assert ladder.next_at(alarm) == T0
    assert ladder.next_at(replace(alarm, climbed=1)) == T0 + 20
    taken = acknowledged(alarm, "dispatcher:ann", T0 + 5)
    assert ladder.due(taken, T0 + 45) == ()
    assert ladder.next_at(taken) is None
    assert ladder.due(cleared(alarm, "condition", T0 + 5), T0 + 45) == ()


@pytest.mark.parametrize("climbed", [0, 1, 2, 3])
def test_rungs_already_climbed_are_not_climbed_again(climbed: int) -> None:
    ladder = DEFAULT_LADDERS["critical"]
    alarm = replace(raised(None, "i", "k", "critical", T0), climbed=climbed)
    assert len(ladder.due(alarm, T0 + 3600)) == 3 - climbed


def test_a_critical_alarm_climbs_the_whole_default_ladder_within_a_minute() -> None:
    assert DEFAULT_LADDERS["critical"].top_s <= WHOLE_LADDER_WITHIN_S
    assert [s.rung for s in DEFAULT_LADDERS["critical"].steps] == [
        "dispatchers",
        "on_call",
        "external",
    ]
    for severity in SEVERITIES:
        assert DEFAULT_LADDERS[severity].steps[0] == Step("dispatchers", 0.0)


def test_an_agencys_ladder_stands_in_for_the_default_of_its_severity() -> None:
    own = Ladder((Step("dispatchers", 0.0), Step("external", 10.0)))
    assert ladder_for("critical", {"critical": own}) is own
    assert ladder_for("major", {"critical": own}) is DEFAULT_LADDERS["major"]


def test_a_ladder_out_of_order_is_refused() -> None:
    with pytest.raises(ValueError):
        Ladder((Step("on_call", 30.0), Step("dispatchers", 0.0)))


@pytest.mark.parametrize("severity", SEVERITIES)
def test_a_ladder_as_written_reads_back_as_it_is_shown(severity: Severity) -> None:
    ladder = DEFAULT_LADDERS[severity]
    assert parse_ladder(spelled(ladder).split()) == ladder
    assert check(severity, ladder) == ladder


@pytest.mark.parametrize(
    ("words", "says"),
    [
        (["external:40", "on_call:20"], "rungs out of order"),
        (["on_call:0", "on_call:20"], "rungs out of order"),  # each rung once
        (["on_call:30", "external:20"], "times out of order"),
        (["on_call:-1"], "seconds from the raising on"),
        (["on_call:nan"], "seconds from the raising on"),
        (["manager:20"], "unknown rung 'manager'"),
        (["on_call=20"], "RUNG:SECONDS"),
    ],
)
def test_a_ladder_written_wrong_is_refused_saying_why(words: list[str], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_ladder(words)


def test_an_agency_may_not_set_an_empty_ladder_nor_a_slow_critical_one() -> None:
    with pytest.raises(ValueError, match="at least one rung"):
        check("minor", parse_ladder([]))
    slow = parse_ladder(["dispatchers:0", "external:61"])
    with pytest.raises(ValueError, match="within 60 s"):
        check("critical", slow)
    assert check("major", slow) == slow
