"""The gateway's pure core: frames, recipients, answers, seq bookkeeping, metrics."""

from __future__ import annotations

import contextlib

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel.contracts import Role
from kernel.errors import RejectedAnswer, RejectedInput
from kernel.tokens import Claims
from ws_gateway.limits import lane_of
from ws_gateway.session import (
    MAX_FRAME_BYTES,
    Administer,
    Answer,
    Auth,
    Counters,
    Delivered,
    Ping,
    Resume,
    decide_administration,
    decide_answer,
    error_frame,
    head_of,
    hello_frame,
    parse_frame,
    resolve_recipient,
    seq_of,
)


def claims(
    role: Role, sub: str = "u1", agency: str = "a1", patients: list[str] | None = None
) -> Claims:
    return Claims(role=role, sub=sub, agency=agency, exp=2e9, patients=patients or [])


# ---------------------------------------------------------------- parse_frame

GOOD_FRAMES: list[tuple[str | bytes, object]] = [
    ('{"type":"ping"}', Ping(type="ping")),
    (b'{"type":"ping","extra":1}', Ping(type="ping")),
    ('{"type":"auth","token":"abc.def"}', Auth(type="auth", token="abc.def")),
    ('{"type":"resume","last_seq":0}', Resume(type="resume", last_seq=0)),
    ('{"type":"resume","last_seq":17}', Resume(type="resume", last_seq=17)),
    ('{"type":"accept","offer_id":"o1"}', Answer(type="accept", offer_id="o1")),
    (
        '{"type":"decline","offer_id":"o1","reason":"busy"}',
        Answer(type="decline", offer_id="o1", reason="busy"),
    ),
]


@pytest.mark.parametrize(("raw", "expected"), GOOD_FRAMES)
def test_parse_frame_accepts(raw: str | bytes, expected: object) -> None:
    assert parse_frame(raw) == expected


BAD_FRAMES: list[tuple[str | bytes, str, type[RejectedInput]]] = [
    ("not json", "malformed", RejectedInput),
    (b"\xff\xfe", "malformed", RejectedInput),
    ("[1,2]", "malformed", RejectedInput),
    ('"ping"', "malformed", RejectedInput),
    ("{}", "malformed", RejectedInput),
    ('{"type":3}', "malformed", RejectedInput),
    ('{"type":"dance"}', "unknown_type", RejectedInput),
    ('{"type":"offer","offer_id":"o1"}', "unknown_type", RejectedInput),
    ('{"type":"resume"}', "malformed", RejectedInput),
    ('{"type":"resume","last_seq":-1}', "malformed", RejectedInput),
    ('{"type":"resume","last_seq":"x"}', "malformed", RejectedInput),
    ('{"type":"auth"}', "malformed", RejectedInput),
    ('{"type":"accept"}', "malformed", RejectedAnswer),
    ('{"type":"accept","offer_id":""}', "malformed", RejectedAnswer),
    ('{"type":"decline","offer_id":7}', "malformed", RejectedAnswer),
    ('{"type":"ping","pad":"' + "x" * MAX_FRAME_BYTES + '"}', "too_large", RejectedInput),
    ("\ud800", "malformed", RejectedInput),  # lone surrogates: no longer a UnicodeEncodeError
    ('{"type":"ping","pad":"\udc80"}', "malformed", RejectedInput),
]


@pytest.mark.parametrize(("raw", "reason", "error"), BAD_FRAMES)
def test_parse_frame_rejects(raw: str | bytes, reason: str, error: type[RejectedInput]) -> None:
    with pytest.raises(RejectedInput) as caught:
        parse_frame(raw)
    assert caught.value.reason == reason
    assert type(caught.value) is error


@given(st.binary(max_size=200) | st.text(max_size=200))
def test_parse_frame_raises_only_rejected_input(raw: str | bytes) -> None:
    with contextlib.suppress(RejectedInput):
        parse_frame(raw)


INT64 = st.integers(-(2**63), 2**63 - 1)


@given(
    st.dictionaries(
        st.sampled_from(["type", "token", "last_seq", "offer_id", "reason"]),
        st.sampled_from(["accept", "ping", "resume", "auth", ""])
        | st.integers(-(2**63), 2**63 - 1)
        | st.none(),
    )
)
def test_parse_frame_objects_raise_only_rejected_input(obj: dict[str, object]) -> None:
    with contextlib.suppress(RejectedInput):
        parse_frame(orjson.dumps(obj))


# ---------------------------------------------------------------- resolve_recipient

RECIPIENTS: list[tuple[Claims, str | None, str]] = [
    (claims("caregiver", "cg7"), None, "cg:cg7"),
    (claims("caregiver", "cg7"), "p1", "cg:cg7"),
    (claims("dispatcher", "d1", "north"), None, "agency:north"),
    (claims("dispatcher", "d1", "north"), "p1", "agency:north"),
    (claims("family", "f1", "north", patients=["p1", "p2"]), None, "patient:north:p1"),
    (claims("family", "f1", "north", patients=["p1", "p2"]), "p2", "patient:north:p2"),
    # another agency's family naming the same patient reads another channel
    (claims("family", "f9", "south", patients=["p1"]), "p1", "patient:south:p1"),
]


@pytest.mark.parametrize(("who", "patient", "recipient"), RECIPIENTS)
def test_resolve_recipient(who: Claims, patient: str | None, recipient: str) -> None:
    assert resolve_recipient(who, patient) == recipient


@pytest.mark.parametrize(
    ("who", "patient"),
    [
        (claims("family", "f1"), None),
        (claims("family", "f1"), "p1"),
        (claims("family", "f1", patients=["p1"]), "p9"),
    ],
)
def test_resolve_recipient_forbidden(who: Claims, patient: str | None) -> None:
    with pytest.raises(RejectedInput) as caught:
        resolve_recipient(who, patient)
    assert caught.value.reason == "forbidden"


# ---------------------------------------------------------------- decide_answer

OFFER = {"caregiver_id": "cg7", "incident_id": "i1", "agency_id": "a1", "expires_at": "1.0"}
ACCEPT = Answer(type="accept", offer_id="o1")


@pytest.mark.parametrize(
    ("who", "offer", "reason"),
    [
        (claims("family", "cg7", patients=["p1"]), OFFER, "forbidden"),
        (claims("dispatcher", "cg7"), OFFER, "forbidden"),
        (claims("caregiver", "cg7"), {}, "unknown_offer"),
        (claims("caregiver", "cg8"), OFFER, "not_your_offer"),
        (claims("caregiver", "cg7", agency="a2"), OFFER, "not_your_offer"),
    ],
)
def test_decide_answer_refuses(who: Claims, offer: dict[str, str], reason: str) -> None:
    with pytest.raises(RejectedAnswer) as caught:
        decide_answer(who, ACCEPT, offer, answer_id="x", now=5.0)
    assert (caught.value.reason, caught.value.offer_id) == (reason, "o1")


@pytest.mark.parametrize(
    "answer",
    [ACCEPT, Answer(type="decline", offer_id="o1", reason="on a visit")],
)
def test_decide_answer_forwards(answer: Answer) -> None:
    event = decide_answer(claims("caregiver", "cg7"), answer, OFFER, answer_id="x", now=5.0)
    assert event.model_dump() == {
        "answer_id": "x",
        "offer_id": "o1",
        "incident_id": "i1",
        "caregiver_id": "cg7",
        "agency_id": "a1",
        "answer": answer.type,
        "reason": answer.reason,
        "at": 5.0,
    }


# ---------------------------------------------------------------- seq bookkeeping


@pytest.mark.parametrize(
    ("message", "seq"),
    [
        (b'{"seq":12,"type":"offer"}', 12),
        (b'{"seq":3}', 3),
        (b'{"type":"offer","seq":4}', 4),
        (b'{"type":"offer"}', 0),
        (b'{"seq":true}', 0),
        (b"nonsense", 0),
    ],
)
def test_seq_of(message: bytes, seq: int) -> None:
    assert seq_of(message) == seq


# (live seqs relayed, then a resume(last_seq) over the kept seqs) -> what each step sends
DELIVERY: list[tuple[list[int], int, list[int], list[int], list[int]]] = [
    # live only: in order, duplicates and stale ones dropped
    ([5, 6, 6, 4, 7], 0, [], [5, 6, 7], []),
    # resume before anything live: everything after last_seq
    ([], 2, [1, 2, 3, 4], [], [3, 4]),
    # live arrived first (7, 8); the resume fills the gap 4..6 and skips 7, 8
    ([7, 8], 3, [1, 2, 3, 4, 5, 6, 7, 8], [7, 8], [4, 5, 6]),
    # resume also returns kept messages newer than what went live
    ([7], 3, [4, 5, 6, 7, 8], [7], [4, 5, 6, 8]),
    # a client that already holds more than was relayed
    ([3], 5, [1, 2, 3, 4, 5], [3], []),
]


@pytest.mark.parametrize(("live", "last_seq", "kept", "sent_live", "replayed"), DELIVERY)
def test_delivered(
    live: list[int], last_seq: int, kept: list[int], sent_live: list[int], replayed: list[int]
) -> None:
    delivered = Delivered()
    assert [s for s in live if delivered.take_live(s)] == sent_live
    assert delivered.take_replay(last_seq, kept) == replayed


def test_delivered_after_resume_drops_what_replay_sent() -> None:
    delivered = Delivered()
    assert delivered.take_replay(2, [1, 2, 3, 4]) == [3, 4]
    assert [s for s in (3, 4, 5) if delivered.take_live(s)] == [5]
    assert delivered.take_replay(0, [1, 2, 3, 4, 5]) == []


@given(st.lists(st.integers(1, 30)), st.integers(0, 30), st.integers(1, 30))
def test_delivered_never_sends_twice(live: list[int], last_seq: int, top: int) -> None:
    delivered = Delivered()
    sent = [s for s in live if delivered.take_live(s)]
    sent += delivered.take_replay(last_seq, range(1, top + 1))
    sent += [s for s in live if delivered.take_live(s)]
    assert len(sent) == len(set(sent))


# ---------------------------------------------------------------- control frames and metrics


def test_control_frames_carry_no_seq() -> None:
    hello = orjson.loads(hello_frame(claims("caregiver", "cg7"), "cg:cg7", 4))
    assert hello == {
        "type": "hello",
        "role": "caregiver",
        "subject": "cg7",
        "recipient": "cg:cg7",
        "seq_now": 4,
        "epoch": 0,
    }
    error = orjson.loads(error_frame(RejectedAnswer("not_your_offer", offer_id="o1")))
    assert error == {"type": "error", "reason": "not_your_offer", "detail": "", "offer_id": "o1"}


def test_metrics_text() -> None:
    counters = Counters()
    counters.rejected["malformed"] += 2
    counters.rejected["unauthorised"] += 1
    text = counters.render(connections=3)
    assert "careknot_gateway_connections 3\n" in text
    assert 'careknot_gateway_rejected_total{reason="malformed"} 2\n' in text
    assert 'careknot_gateway_rejected_total{reason="unauthorised"} 1\n' in text


@pytest.mark.parametrize(
    ("message", "head"),
    [
        (b'{"seq":7,"epoch":1764770000123456,"type":"x"}', (7, 1764770000123456)),
        (b'{"seq":7,"type":"x"}', (7, 0)),  # before epochs: one stream
        (b'{"type":"x","epoch":5,"seq":3}', (3, 5)),  # not the script's order: parsed
        (b'{"seq":7,"epoch":"5","type":"x"}', (7, 0)),
        (b"[1]", (0, 0)),
        (b"not json", (0, 0)),
    ],
)
def test_head_of(message: bytes, head: tuple[int, int]) -> None:
    assert head_of(message) == head


def test_after_the_relay_lost_messages_a_replay_fills_the_gap_and_nothing_twice() -> None:
    delivered = Delivered()
    assert [s for s in (1, 2, 3) if delivered.take_live(s)] == [1, 2, 3]
    delivered.settle()  # 4 and 5 were published while the relay was away
    assert [s for s in (6, 7) if delivered.take_live(s)] == [6, 7]
    assert delivered.take_replay(delivered.floor, [1, 2, 3, 4, 5, 6, 7]) == [4, 5]
    assert [s for s in (7, 8) if delivered.take_live(s)] == [8]


# ---------------------------------------------------------------- a caregiver's medication log

ENTRY = (
    '{"type":"administration","record_id":"r1","patient_id":"p1",'
    '"dose_key":"2026-12-03T08:00/bisoprolol","action":"refused","note":"spat it out"}'
)


def test_an_administration_entry_parses() -> None:
    entry = parse_frame(ENTRY)
    assert entry == Administer(
        type="administration",
        record_id="r1",
        patient_id="p1",
        dose_key="2026-12-03T08:00/bisoprolol",
        action="refused",
        note="spat it out",
    )


@pytest.mark.parametrize(
    "raw",
    [
        ENTRY.replace('"refused"', '"thrown_away"'),  # no such action
        ENTRY.replace('"record_id":"r1",', ""),  # her id for the entry is needed
        ENTRY.replace('"p1"', '""'),
        ENTRY.replace('"action"', '"given_at":-5,"action"'),
    ],
)
def test_a_bad_administration_entry_is_malformed(raw: str) -> None:
    with pytest.raises(RejectedInput) as refused:
        parse_frame(raw)
    assert refused.value.reason == "malformed"


NOW = 1_800_000_000.0
DECISIONS: list[tuple[Role, float | None, str | None, float | None]] = [
    # (role, given_at, refused as, given at as recorded)
    ("caregiver", None, None, NOW),  # not said: now
    ("caregiver", NOW - 1800, None, NOW - 1800),  # logged after the visit's rush
    ("caregiver", NOW + 30, None, NOW + 30),  # a phone's clock a little ahead
    ("caregiver", NOW + 120, "bad_time", None),
    ("caregiver", NOW - 13 * 3600, "bad_time", None),
    ("family", None, "forbidden", None),
    ("dispatcher", None, "forbidden", None),
]


@pytest.mark.parametrize(("role", "given_at", "refused", "recorded"), DECISIONS)
def test_an_administration_entry_is_hers_or_refused(
    role: Role, given_at: float | None, refused: str | None, recorded: float | None
) -> None:
    entry = Administer.model_validate({**orjson.loads(ENTRY), "given_at": given_at})
    who = claims(role, sub="cg7", agency="a9")
    if refused is not None:
        with pytest.raises(RejectedInput) as rejected:
            decide_administration(who, entry, now=NOW)
        assert rejected.value.reason == refused
        return
    event = decide_administration(who, entry, now=NOW)
    assert (event.caregiver_id, event.agency_id, event.patient_id) == ("cg7", "a9", "p1")
    assert (event.given_at, event.at, event.action) == (recorded, NOW, "refused")
    assert event.record_id == "r1"


def test_an_administration_entry_draws_on_the_answers_budget() -> None:
    assert lane_of("administration") == lane_of("accept") == "answers"
