"""What the agents decode from Kafka and what they refuse: values that are not JSON, JSON of
another shape and tombstones are refused with a reason, in order, and their neighbours kept."""

from __future__ import annotations

import orjson

from kernel.contracts import Presence
from streams.dead_letters import PAYLOAD_CHARS, dead_letter
from streams.decoding import TOMBSTONE, UNDECODABLE, Refused, decode_each, decode_split
from streams.fix_flow import decode_fixes
from tests.support import fix_event


def presence(caregiver: str) -> Presence:
    return Presence(
        event_id=f"{caregiver}:offline",
        agency_id="a1",
        caregiver_id=caregiver,
        online=False,
        at=1.0,
        source="owntracks/x",
    )


def test_values_split_into_decoded_and_refused_with_their_reasons() -> None:
    a, b = presence("cg1"), presence("cg2")
    values = [
        a.model_dump_json().encode(),
        b"{not json",
        b"null",
        None,
        b.model_dump_json().encode(),
    ]
    decoded = decode_split(Presence, values)
    assert decoded.taken == [a, b]
    assert [(r.value, r.reason) for r in decoded.refused] == [
        (b"{not json", UNDECODABLE),
        (b"null", UNDECODABLE),
        (None, TOMBSTONE),
    ]
    assert all(r.detail for r in decoded.refused[:2])


def test_decode_each_hands_over_what_it_refused_when_asked() -> None:
    a = presence("cg1")
    values = [b"[]", a.model_dump_json().encode()]
    assert decode_each(Presence, values) == [a]
    refused: list[Refused] = []
    assert decode_each(Presence, values, refused) == [a]
    assert [r.value for r in refused] == [b"[]"]


def test_batches_of_fixes_refuse_only_what_does_not_decode() -> None:
    good = [fix_event("cg1", 1.0), fix_event("cg2", 2.0)]
    items = [good[0].model_dump(), {"caregiver_id": "x"}, good[1].model_dump()]
    refused: list[Refused] = []
    values = [orjson.dumps(items), b"[not json", None, b"garbage"]
    assert decode_fixes(values, refused) == good  # type: ignore[arg-type]
    assert [r.reason for r in refused] == [UNDECODABLE, UNDECODABLE, TOMBSTONE, UNDECODABLE]
    assert [r.value for r in refused][1:] == [b"[not json", None, b"garbage"]
    assert orjson.loads(refused[0].value or b"") == {"caregiver_id": "x"}


def test_a_dead_letter_names_its_topic_and_truncates_its_payload() -> None:
    letter = dead_letter(Refused(b"x" * 5000, UNDECODABLE, "bad"), "ns.device-events", 7.0)
    assert (letter.reason, letter.source, letter.detail) == (UNDECODABLE, "ns.device-events", "bad")
    assert letter.payload == "x" * PAYLOAD_CHARS
    assert letter.truncated is True
    whole = dead_letter(Refused(b"x" * PAYLOAD_CHARS, UNDECODABLE, "bad"), "ns.fixes", 7.0)
    assert (whole.payload, whole.truncated) == ("x" * PAYLOAD_CHARS, False)
    tombstone = dead_letter(Refused(None, TOMBSTONE), "ns.fixes", 7.0)
    assert (tombstone.payload, tombstone.truncated) == ("", False)
