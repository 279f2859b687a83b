"""The offer-answers topic carries caregivers' answers and dispatchers' commands; the agent tells
them apart by their fields. A free-text field that says "command" (a decline's reason, a
command's note) changes nothing: before, any value containing the bytes ``"command"`` was taken
for a command, so such a decline was refused as a malformed command and lost."""

from __future__ import annotations

import orjson
import pytest

from kernel.contracts import DispatcherCommand, OfferAnswer
from streams.decoding import TOMBSTONE, UNDECODABLE, Refused, decode_answer

ANSWER = {
    "answer_id": "a1",
    "offer_id": "o1",
    "incident_id": "i1",
    "caregiver_id": "cg1",
    "agency_id": "ag1",
    "answer": "decline",
    "at": 1.0,
}
COMMAND = {
    "command_id": "c1",
    "command": "resolve",
    "incident_id": "i1",
    "agency_id": "ag1",
    "dispatcher_id": "d1",
    "at": 1.0,
}


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        (ANSWER, OfferAnswer),
        ({**ANSWER, "reason": "command"}, OfferAnswer),
        ({**ANSWER, "answer": "accept", "reason": 'the "command" word'}, OfferAnswer),
        (COMMAND, DispatcherCommand),
        (
            {**COMMAND, "command": "assign", "caregiver_id": "cg1", "note": "answer"},
            DispatcherCommand,
        ),
    ],
)
def test_answers_and_commands_are_told_apart_by_their_fields(
    fields: dict[str, object], kind: type[OfferAnswer | DispatcherCommand]
) -> None:
    item = decode_answer(orjson.dumps(fields))
    assert not isinstance(item, Refused)
    assert isinstance(item, kind)
    assert item.model_dump(exclude_none=True) == fields


def test_a_decline_whose_reason_is_command_is_an_answer() -> None:
    value = orjson.dumps({**ANSWER, "reason": "command"})
    assert b'"command"' in value  # what used to route it to the commands
    item = decode_answer(value)
    assert isinstance(item, OfferAnswer)
    assert (item.answer, item.reason) == ("decline", "command")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, TOMBSTONE),
        (b"", UNDECODABLE),
        (b"null", UNDECODABLE),
        (b"[]", UNDECODABLE),
        (b"not json", UNDECODABLE),
        (orjson.dumps({"answer": "accept"}), UNDECODABLE),
        (orjson.dumps({}), UNDECODABLE),
    ],
)
def test_what_is_neither_is_refused_with_its_reason(value: bytes | None, reason: str) -> None:
    refused = decode_answer(value)
    assert isinstance(refused, Refused)
    assert (refused.value, refused.reason) == (value, reason)
