"""The pure core of a gateway connection: no I/O, no clock, no event loop.

It owns what a connection decides:

- :func:`parse_frame`: a client frame to a typed command, or :class:`RejectedInput` with a
  stable ``reason`` (``malformed``, ``unknown_type``, ``too_large``);
- :func:`resolve_recipient`: the one outbox recipient a token may read (or ``forbidden``);
- :func:`decide_answer`: a caregiver's accept/decline checked against the offer record;
- :func:`decide_command`: a dispatcher's ``assign``/``resolve`` of an incident, or
  ``acknowledge``/``clear`` of an alarm, stamped with her agency;
- :func:`decide_administration`: a caregiver's medication administration log entry, stamped
  as hers;
- :class:`Delivered`: which outbox seqs a connection has already sent, so live relay and
  resume replay never send a message twice;
- the control frames ``hello``, ``ack``, ``error``, ``resync`` and ``pong``, and the
  ``/metrics`` text.

Control frames carry no ``seq``: only outbox messages do, and their ``seq`` and ``epoch`` are
the recipient's (from :mod:`adapters.storage.outbox`), which is what ``resume`` and
``hello.seq_now`` refer to. A new epoch means the recipient's stream was lost and started
again: the gateway tells the client ``resync`` and sends what the new one kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from kernel import commands, recipients
from kernel.contracts import (
    SEQ_MAX,
    AccessRecord,
    Administration,
    AdministrationAction,
    AlarmCommand,
    AlarmCommandKind,
    DispatcherCommand,
    OfferAnswer,
)
from kernel.errors import RejectedAnswer, RejectedInput
from kernel.tokens import Claims

MAX_FRAME_BYTES = 64 * 1024

MALFORMED = "malformed"
UNKNOWN_TYPE = "unknown_type"
TOO_LARGE = "too_large"
UNAUTHORISED = "unauthorised"
FORBIDDEN = "forbidden"
UNKNOWN_OFFER = "unknown_offer"
NOT_YOUR_OFFER = "not_your_offer"

OfferId = Annotated[str, Field(min_length=1, max_length=128)]


class _Command(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Auth(_Command):
    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=4096)


class Resume(_Command):
    """Send what was kept after ``last_seq``; ``epoch``, when given, is the stream it counts in
    (a different one is answered ``resync``)."""

    type: Literal["resume"]
    last_seq: int = Field(ge=0, le=SEQ_MAX)
    epoch: int | None = Field(default=None, ge=0, le=SEQ_MAX)


class Ping(_Command):
    type: Literal["ping"]


class Answer(_Command):
    type: Literal["accept", "decline"]
    offer_id: OfferId
    reason: str | None = Field(default=None, max_length=500)


class Assign(_Command):
    """A dispatcher gives an incident of her agency to a caregiver by hand."""

    type: Literal["assign"]
    incident_id: OfferId
    caregiver_id: OfferId


class Resolve(_Command):
    """A dispatcher closes an incident of her agency; its pending offers are cancelled."""

    type: Literal["resolve"]
    incident_id: OfferId
    note: str | None = Field(default=None, max_length=500)


class AlarmHand(_Command):
    """A dispatcher acknowledges an alarm of her agency (its ladder stops), clears it, clears
    it as a false alarm (kept as a label its routine model learns from), or opens an incident
    from it (a caregiver dispatched to its patient)."""

    type: AlarmCommandKind
    alarm_id: OfferId


class Administer(_Command):
    """A caregiver on a visit logs a scheduled dose: ``administered``, ``refused`` by the
    patient, or ``unavailable``. ``record_id`` is her own id for the entry (sent again, it is
    recorded once); ``given_at`` when it happened, if not now."""

    type: Literal["administration"]
    record_id: OfferId
    patient_id: OfferId
    dose_key: str = Field(min_length=1, max_length=200)
    action: AdministrationAction
    given_at: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    note: str | None = Field(default=None, max_length=500)


Frame = Auth | Resume | Ping | Answer | Assign | Resolve | AlarmHand | Administer
Command = Annotated[Frame, Field(discriminator="type")]
_COMMAND: TypeAdapter[Frame] = TypeAdapter(Command)
COMMAND_TYPES = frozenset(
    (
        "auth",
        "resume",
        "ping",
        "accept",
        "decline",
        "assign",
        "resolve",
        "acknowledge",
        "clear",
        "false_alarm",
        "open_incident",
        "administration",
    )
)
GIVEN_AHEAD_S = 60.0
"""A dose logged as given this far after the gateway's now is a phone's clock off: refused."""
GIVEN_BEHIND_S = 12 * 3600.0
"""A dose logged as given longer ago than this is not an entry of a visit: refused."""
BAD_TIME = "bad_time"


def parse_frame(raw: str | bytes) -> Frame:
    """Parse one client frame; only :class:`RejectedInput` escapes.

    An ``accept``/``decline`` with bad fields raises its child :class:`RejectedAnswer`, so it
    is dead-lettered like any refused answer.
    """
    # surrogatepass: text with lone surrogates (no text frame carries them) is refused as not JSON
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) > MAX_FRAME_BYTES:
        raise RejectedInput(TOO_LARGE, f"{len(data)} bytes > {MAX_FRAME_BYTES}")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RejectedInput(MALFORMED, "not JSON") from exc
    if not isinstance(obj, dict):
        raise RejectedInput(MALFORMED, "not a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise RejectedInput(MALFORMED, "missing type")
    if kind not in COMMAND_TYPES:
        raise RejectedInput(UNKNOWN_TYPE, kind[:64])
    try:
        return _COMMAND.validate_python(obj)
    except ValidationError as exc:
        detail = "invalid " + ",".join(".".join(map(str, e["loc"][1:])) for e in exc.errors())
        if kind in ("accept", "decline"):
            offer_id = obj.get("offer_id")
            raise RejectedAnswer(
                MALFORMED, detail, offer_id=offer_id if isinstance(offer_id, str) else ""
            ) from exc
        raise RejectedInput(MALFORMED, detail) from exc


def resolve_recipient(claims: Claims, patient: str | None = None) -> str:
    """The one outbox recipient these claims read; ``forbidden`` if a family has no such right."""
    if claims.role == "caregiver":
        return recipients.caregiver(claims.sub)
    if claims.role in ("dispatcher", "admin"):  # an admin watches; only a dispatcher commands
        return recipients.dispatchers(claims.agency)
    if not claims.patients:
        raise RejectedInput(FORBIDDEN, "no patient in token")
    if patient is None:
        return recipients.family_of(claims.agency, claims.patients[0])
    if patient not in claims.patients:
        raise RejectedInput(FORBIDDEN, "patient not in token")
    return recipients.family_of(claims.agency, patient)


def reads_the_same(fresh: Claims, held: Claims, recipient: str) -> bool:
    """Whether a fresh token is the same person's, reading the same recipient: what an open
    connection may go on under."""
    if (fresh.role, fresh.sub, fresh.agency) != (held.role, held.sub, held.agency):
        return False
    if fresh.role != "family":
        return resolve_recipient(fresh) == recipient
    return recipient in {recipients.family_of(fresh.agency, p) for p in fresh.patients}


def access_record(
    claims: Claims,
    recipient: str,
    what: Literal["connected", "refreshed"],
    *,
    record_id: str,
    now: float,
) -> AccessRecord:
    """The audit's record that ``claims``' holder reads ``recipient``'s messages (a family's
    names its patient)."""
    patient = recipient.rsplit(":", 1)[1] if claims.role == "family" else None
    return AccessRecord(
        record_id=record_id,
        agency_id=claims.agency,
        role=claims.role,
        subject=claims.sub,
        recipient=recipient,
        patient_id=patient,
        what=what,
        at=now,
    )


def auth_ok_frame(claims: Claims) -> str:
    """A fresh token taken: the connection goes on until it expires."""
    return orjson.dumps({"type": "auth_ok", "exp": claims.exp}).decode()


def decide_answer(
    claims: Claims,
    answer: Answer,
    offer: Mapping[str, str],
    *,
    answer_id: str,
    now: float,
) -> OfferAnswer:
    """The event a caregiver's answer becomes, or :class:`RejectedAnswer`.

    ``offer`` is the offer record's fields (empty when there is no such offer).
    """
    if claims.role != "caregiver":
        raise RejectedAnswer(FORBIDDEN, f"a {claims.role} cannot answer", offer_id=answer.offer_id)
    if not offer.get("incident_id"):
        raise RejectedAnswer(UNKNOWN_OFFER, offer_id=answer.offer_id)
    if offer.get("caregiver_id") != claims.sub or offer.get("agency_id") != claims.agency:
        raise RejectedAnswer(NOT_YOUR_OFFER, offer_id=answer.offer_id)
    return OfferAnswer(
        answer_id=answer_id,
        offer_id=answer.offer_id,
        incident_id=offer["incident_id"],
        caregiver_id=claims.sub,
        agency_id=claims.agency,
        answer=answer.type,
        reason=answer.reason,
        at=now,
    )


def decide_alarm_hand(
    claims: Claims, hand: AlarmHand, *, command_id: str, now: float
) -> AlarmCommand:
    """The event a dispatcher's acknowledge or clear becomes, in her agency; ``forbidden`` for
    anyone else (:func:`kernel.commands.alarm_command`, as the HTTP API's)."""
    return commands.alarm_command(claims, hand.type, hand.alarm_id, command_id=command_id, now=now)


def decide_command(
    claims: Claims, command: Assign | Resolve, *, command_id: str, now: float
) -> DispatcherCommand:
    """The event a dispatcher's frame becomes, in her agency; ``forbidden`` for anyone else
    (:func:`kernel.commands.incident_command`, as the HTTP API's)."""
    return commands.incident_command(
        claims,
        command.type,
        command.incident_id,
        caregiver_id=command.caregiver_id if isinstance(command, Assign) else None,
        note=command.note if isinstance(command, Resolve) else None,
        command_id=command_id,
        now=now,
    )


def decide_administration(claims: Claims, entry: Administer, *, now: float) -> Administration:
    """The event a caregiver's log entry becomes, as hers in her agency; ``forbidden`` for
    anyone else, ``bad_time`` for a time ahead of now or more than half a day back. Whether she
    is on a visit to the patient and the dose is scheduled is the worker's to check."""
    if claims.role != "caregiver":
        raise RejectedInput(FORBIDDEN, f"a {claims.role} cannot log a dose")
    given_at = now if entry.given_at is None else entry.given_at
    if not now - GIVEN_BEHIND_S <= given_at <= now + GIVEN_AHEAD_S:
        raise RejectedInput(BAD_TIME, f"given_at {given_at:.0f} is not near now")
    return Administration(
        record_id=entry.record_id,
        caregiver_id=claims.sub,
        agency_id=claims.agency,
        patient_id=entry.patient_id,
        dose_key=entry.dose_key,
        action=entry.action,
        given_at=given_at,
        note=entry.note,
        at=now,
    )


def seq_of(message: bytes) -> int:
    """The ``seq`` of an outbox message (the outbox script puts it first); 0 if it has none."""
    return head_of(message)[0]


_SEQ = b'{"seq":'
_EPOCH = b'"epoch":'


def head_of(message: bytes) -> tuple[int, int]:
    """The ``seq`` and ``epoch`` of an outbox message (the outbox script puts them first, in
    that order); 0 for either it does not have."""
    if message.startswith(_SEQ):
        end = message.find(b",", len(_SEQ))
        digits = message[len(_SEQ) : end if end > 0 else None]
        if digits.isdigit() and message.startswith(_EPOCH, end + 1):
            start = end + 1 + len(_EPOCH)
            stop = message.find(b",", start)
            epoch = message[start : stop if stop > 0 else None]
            if epoch.isdigit():
                return int(digits), int(epoch)
    try:
        obj = orjson.loads(message)
    except orjson.JSONDecodeError:
        return 0, 0
    if not isinstance(obj, dict):
        return 0, 0
    return _count(obj.get("seq")), _count(obj.get("epoch"))


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class Delivered:
    """The outbox seqs a connection has sent, so nothing reaches the client twice.

    The client holds everything up to ``floor`` (what it said in its last resume) and the
    run ``first..last`` relayed live since. A live message is sent only above both. A resume
    sends, in order, the kept messages above its ``last_seq`` that are outside the run; those
    below the run arrive after it (clients order by ``seq``). Then the run folds into the floor.
    """

    __slots__ = ("first", "floor", "last")

    def __init__(self) -> None:
        self.floor = 0
        self.first = 0
        self.last = 0

    @property
    def high(self) -> int:
        """The last seq sent, or claimed by the client: live messages at or below it drop."""
        return max(self.floor, self.last)

    def take_live(self, seq: int) -> bool:
        if seq <= self.high:
            return False
        if not self.last:
            self.first = seq
        self.last = seq
        return True

    def settle(self) -> None:
        """The live run ends here (the relay lost messages): what follows is a new run, and a
        replay from :attr:`high` fills the gap between the two."""
        self.floor = self.high
        self.first = self.last = 0

    def take_replay(self, last_seq: int, seqs: Iterable[int]) -> list[int]:
        """Of the kept ``seqs`` (ascending), those to send after a resume from ``last_seq``."""
        floor = max(self.floor, last_seq)
        send = [s for s in seqs if s > floor and not (self.first <= s <= self.last)]
        self.floor = max(floor, self.last, *send)
        self.first = self.last = 0
        return send


# ---------------------------------------------------------------- control frames (no seq)


def hello_frame(claims: Claims, recipient: str, seq_now: int, epoch: int = 0) -> bytes:
    return orjson.dumps(
        {
            "type": "hello",
            "role": claims.role,
            "subject": claims.sub,
            "recipient": recipient,
            "seq_now": seq_now,
            "epoch": epoch,
        }
    )


def resync_frame(epoch: int, seq_now: int) -> bytes:
    """The recipient's stream was lost (its server restarted without its data): what the client
    holds of the old one is no guide; seqs start again in ``epoch``, and what was kept of it
    follows. The client reloads its state (open offers, incidents) from what comes."""
    return orjson.dumps({"type": "resync", "epoch": epoch, "seq_now": seq_now})


def error_frame(rejection: RejectedInput) -> bytes:
    frame: dict[str, str] = {
        "type": "error",
        "reason": rejection.reason,
        "detail": rejection.detail,
    }
    if isinstance(rejection, RejectedAnswer) and rejection.offer_id:
        frame["offer_id"] = rejection.offer_id
    return orjson.dumps(frame)


def ack_frame(offer_id: str) -> bytes:
    return orjson.dumps({"type": "ack", "offer_id": offer_id})


def administration_ack_frame(entry: Administer) -> bytes:
    """A caregiver's log entry was forwarded; what became of it comes as an
    ``administration_result`` frame with the same ``record_id``, once the worker decided."""
    return orjson.dumps({"type": "ack", "command": entry.type, "record_id": entry.record_id})


def command_ack_frame(command: Assign | Resolve | AlarmHand, command_id: str) -> bytes:
    """A dispatcher's command was forwarded; its outcome comes as a ``command_result`` frame
    with the same ``command_id``, once the worker decided."""
    about = (
        {"alarm_id": command.alarm_id}
        if isinstance(command, AlarmHand)
        else {"incident_id": command.incident_id}
    )
    return orjson.dumps({"type": "ack", "command": command.type, "command_id": command_id, **about})


PONG = orjson.dumps({"type": "pong"})


# ---------------------------------------------------------------- metrics


class Counters:
    """What the gateway counts: rejections by reason, slow clients closed, answers forwarded."""

    def __init__(self) -> None:
        self.rejected: Counter[str] = Counter()
        self.slow_closed = 0
        self.rate_closed = 0
        self.resyncs = 0
        self.answers: Counter[str] = Counter()

    def render(self, connections: int) -> str:
        """Prometheus text exposition format."""
        lines = [
            "# TYPE careknot_gateway_connections gauge",
            f"careknot_gateway_connections {connections}",
            "# TYPE careknot_gateway_rejected_total counter",
            *(
                f'careknot_gateway_rejected_total{{reason="{reason}"}} {n}'
                for reason, n in sorted(self.rejected.items())
            ),
            "# TYPE careknot_gateway_slow_closed_total counter",
            f"careknot_gateway_slow_closed_total {self.slow_closed}",
            "# TYPE careknot_gateway_rate_closed_total counter",
            f"careknot_gateway_rate_closed_total {self.rate_closed}",
            "# TYPE careknot_gateway_resyncs_total counter",
            f"careknot_gateway_resyncs_total {self.resyncs}",
            "# TYPE careknot_gateway_answers_total counter",
            *(
                f'careknot_gateway_answers_total{{answer="{answer}"}} {n}'
                for answer, n in sorted(self.answers.items())
            ),
        ]
        return "\n".join(lines) + "\n"
