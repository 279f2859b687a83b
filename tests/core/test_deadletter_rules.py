"""``careknot deadletter``'s rules, without servers: which letters may be sent again, where to,
keyed how, and how they are named and listed."""

from __future__ import annotations

import orjson
import pytest

from careknot.deadletter import (
    CUT_AT_LEAST,
    Letter,
    LetterId,
    find,
    kafka_source,
    listing,
    may_be_cut,
    message_key,
    row,
    to_replay,
    why_not,
)
from kernel import keys
from kernel.contracts import DeadLetter
from kernel.settings import Settings
from tests.support import fix_event

S = Settings(namespace="ns")
DEVICE_EVENTS = S.keys.topic(keys.DEVICE_EVENTS)


def letter(
    partition: int = 0,
    offset: int = 0,
    *,
    reason: str = "poison",
    source: str = DEVICE_EVENTS,
    payload: str = '{"device_id": "d1"}',
    truncated: bool | None = False,
    replays: int = 0,
) -> Letter:
    dead = DeadLetter(
        reason=reason,
        detail="RuntimeError: boom",
        source=source,
        payload=payload,
        received_at=1_700_000_000.0,
        truncated=truncated,
    )
    return Letter(LetterId(partition, offset), dead, [1.0] * replays)


def test_a_letter_says_whether_it_was_cut_and_an_older_one_is_judged_by_its_length() -> None:
    assert may_be_cut(letter(truncated=True).letter)
    assert not may_be_cut(letter(truncated=False, payload="x" * 5000).letter)
    assert may_be_cut(letter(truncated=None, payload="x" * CUT_AT_LEAST).letter)
    assert not may_be_cut(letter(truncated=None, payload="x" * (CUT_AT_LEAST - 1)).letter)
    assert may_be_cut(letter(truncated=None, payload="é" * (CUT_AT_LEAST // 2)).letter)


@pytest.mark.parametrize(
    ("source", "logical"),
    [
        (DEVICE_EVENTS, keys.DEVICE_EVENTS),
        (S.keys.topic(keys.FIXES), keys.FIXES),
        ("other.device-events", None),
        (S.keys.topic(keys.DEADLETTER), None),
        ("ns.unknown", None),
        ("ck/a1/dev/d1/evt", None),
    ],
)
def test_only_the_namespaces_own_topics_are_sources_to_send_back_to(
    source: str, logical: str | None
) -> None:
    assert kafka_source(letter(source=source).letter, S) == logical


def test_why_a_letter_is_not_sent_again() -> None:
    assert why_not(letter(), S) is None
    assert "only its device" in str(why_not(letter(source="ck/a1/dev/d1/evt"), S))
    assert "tombstone" in str(why_not(letter(reason="tombstone", payload=""), S))
    assert "cut short" in str(why_not(letter(truncated=True), S))
    assert "not UTF-8" in str(why_not(letter(payload='{"device_id": "d\ufffd"}'), S))


def test_a_value_is_keyed_as_the_services_key_its_topic() -> None:
    assert message_key(keys.DEVICE_EVENTS, '{"device_id": "d7", "type": "fall"}') == "d7"
    assert message_key(keys.OFFER_ANSWERS, '{"incident_id": "i1", "answer": "accept"}') == "i1"
    assert message_key(keys.OFFER_ANSWERS, '{"alarm_id": "a1", "command": "clear"}') == "a1"
    entry = '{"record_id": "r1", "patient_id": "p1", "action": "refused"}'
    assert message_key(keys.OFFER_ANSWERS, entry) == "p1"  # a medication log entry
    fixes = orjson.dumps([fix_event("cg9", 1.0).model_dump(), fix_event("cg3", 2.0).model_dump()])
    assert message_key(keys.FIXES, fixes.decode()) == "cg9"
    assert message_key(keys.DEVICE_EVENTS, "{not json") is None
    assert message_key(keys.DEVICE_EVENTS, '{"device_id": 7}') is None
    assert message_key(keys.DEVICE_EVENTS, "[]") is None


def test_a_letter_is_found_by_partition_and_offset_or_by_an_offset_only_one_has() -> None:
    letters = [letter(0, 4), letter(1, 4), letter(2, 9)]
    assert find(letters, "1:4") is letters[1]
    assert find(letters, "9") is letters[2]
    with pytest.raises(LookupError, match="which one"):
        find(letters, "4")
    with pytest.raises(LookupError, match="no such letter"):
        find(letters, "3:4")
    with pytest.raises(LookupError, match="PARTITION:OFFSET"):
        find(letters, "a:4")


def test_replay_by_reason_takes_the_letters_not_replayed_yet() -> None:
    letters = [letter(0, 1), letter(0, 2, replays=1), letter(0, 3, reason="outage")]
    assert to_replay(letters, [], "poison") == [letters[0]]
    assert to_replay(letters, ["0:2"], None) == [letters[1]]


def test_a_row_shows_where_when_why_and_its_marks() -> None:
    line = row(letter(3, 17, truncated=True, replays=2))
    assert line.split() == [
        "3:17",
        "2023-11-14T22:13:20+00:00",
        "poison",
        DEVICE_EVENTS,
        "RuntimeError:",
        "boom",
        "[truncated,",
        "replayed",
        "2x]",
    ]
    assert row(letter()).endswith("RuntimeError: boom")


def test_a_listing_shows_the_latest_and_says_how_many_are_left_out() -> None:
    lines = listing([letter(0, n) for n in range(5)], 2).splitlines()
    assert [line.split()[0] for line in lines[1:3]] == ["0:3", "0:4"]
    assert lines[3] == "(3 older not shown: --limit)"
    assert len(listing([letter()], 50).splitlines()) == 2
