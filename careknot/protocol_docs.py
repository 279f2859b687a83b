"""The client-facing protocols written down from the code, for the people who build clients.

``careknot docs`` writes ``docs/asyncapi.json`` (AsyncAPI 3.0: the WebSocket gateway's frames
both ways, per role, and the MQTT topics devices and phones publish on) and ``docs/openapi.json``
(the HTTP API's, as FastAPI makes it). Every payload schema is a pydantic model's own JSON
Schema: the frames of :mod:`kernel.contracts`, the client frames :func:`ws_gateway.session.
parse_frame` takes, the MQTT payloads ingest validates, and the control frames the gateway
writes as plain JSON (:class:`HelloFrame` and the rest below, which
``tests/core/test_protocol_docs.py`` holds to what :mod:`ws_gateway.session` writes). What each
role may send is asked of the gateway's own deciders. Both files are written with sorted keys,
so the same code gives the same bytes: the test fails when the committed ones differ from what
the code gives, until ``careknot docs`` is run again. ``docs/protocol.md`` is the page that
explains them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard, get_args, get_origin

import orjson
from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from adapters.storage.outbox import OUTBOX_MAXLEN
from ingest import owntracks
from ingest.parse import PRESENCE_PAYLOADS, TELEMETRY_MAX_AGE_S, TOO_LARGE, Limits
from ingest.registry import REGISTRY_UNAVAILABLE
from ingest.service import INTERNAL_ERROR, STREAMS
from kernel import contracts
from kernel.contracts import (
    DEVICE_STATUS_PAYLOADS,
    OWNTRACKS_NAME,
    TELEMETRY_BATCH_MAX,
    DeviceEventPayload,
    DeviceHeartbeatPayload,
    LocationPayload,
    Role,
    TelemetryBatch,
    TelemetryReading,
)
from kernel.errors import RejectedInput
from kernel.settings import Settings
from kernel.tokens import Claims
from ws_gateway import connection, conversation, session
from ws_gateway.limits import RATE_LIMITED, FrameLimits, lane_of
from ws_gateway.web import WEBSOCKET_PATH

ASYNCAPI = "asyncapi.json"
OPENAPI = "openapi.json"
ROLES: tuple[Role, ...] = get_args(Role)
DOCS_TOKEN_KEY = "docs:" + "0" * 43
"""A key for the API's app to be made with: the OpenAPI document names no key."""
SCHEMAS = "#/components/schemas/{model}"


GATEWAY_REASONS: dict[str, str] = {
    session.MALFORMED: "not JSON, not an object, no ``type``, or a field missing or wrong"
    " (``detail`` names the fields)",
    session.UNKNOWN_TYPE: "a ``type`` clients do not send",
    session.TOO_LARGE: f"a frame over {session.MAX_FRAME_BYTES // 1024} KiB",
    session.UNAUTHORISED: "no token, a token not genuine, expired or revoked (on connecting,"
    " on an ``auth`` refresh, or when the token lapses on an open connection)",
    session.FORBIDDEN: "the role may not send this frame, a family's token does not name the"
    " ``patient`` asked for, or a fresh token is someone else's",
    session.UNKNOWN_OFFER: "no such offer (or it is over and forgotten)",
    session.NOT_YOUR_OFFER: "the offer is another caregiver's",
    session.BAD_TIME: f"``given_at`` more than {session.GIVEN_AHEAD_S:g} s ahead or"
    f" {session.GIVEN_BEHIND_S / 3600:g} h behind the gateway's clock",
    RATE_LIMITED: "over the frame kind's budget: the frame is not handled",
    conversation.UNAVAILABLE: "the gateway cannot reach Redis or Kafka now: send it again",
}
"""Every ``reason`` of an ``error`` frame."""
_REASONS: list[JsonValue] = [*sorted(GATEWAY_REASONS)]


# ---------------------------------------------------------------- control frames (no seq)


class _Control(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HelloFrame(_Control):
    """The gateway's first frame once the token is taken: whom the token names, the one
    recipient the connection reads, and where its stream stands. A client holding less than
    ``seq_now`` of the same ``epoch`` sends ``resume``."""

    type: Literal["hello"] = "hello"
    role: Role
    subject: str = Field(
        description="the token's ``sub``: the caregiver's, family member's or dispatcher's id"
    )
    recipient: str = Field(
        description="whose messages the connection reads: ``cg:{caregiver}``,"
        " ``patient:{agency}:{patient}`` (a family) or ``agency:{agency}`` (its dispatchers)"
    )
    seq_now: int = Field(ge=0, description="the last seq given in the recipient's stream")
    epoch: int = Field(ge=0, description="the stream's epoch (0: nothing sent to it yet)")


class AuthOkFrame(_Control):
    """A fresh token, sent in an ``auth`` frame on an open connection, was taken: the connection
    goes on until its ``exp``."""

    type: Literal["auth_ok"] = "auth_ok"
    exp: float = Field(description="when the new token expires (epoch s)")


class ResyncFrame(_Control):
    """The recipient's stream was lost and started again: what the client counted is no guide.
    It forgets its seqs, takes ``epoch`` as its stream's, and reloads its state from what
    follows (the kept messages of the new stream, its standing offers and incidents among
    them)."""

    type: Literal["resync"] = "resync"
    epoch: int = Field(ge=0)
    seq_now: int = Field(ge=0)


class ErrorFrame(_Control):
    """A frame refused, or the connection refused or closing: ``reason`` is stable, for
    programs; ``detail`` is for people. A refused ``accept``/``decline`` names its offer."""

    type: Literal["error"] = "error"
    reason: str = Field(json_schema_extra={"enum": list(_REASONS)})
    detail: str
    offer_id: str | None = Field(default=None, description="a refused answer's offer")


class AnswerAck(_Control):
    """A caregiver's ``accept`` or ``decline`` was forwarded; what became of the offer comes as
    ``offer_result``."""

    type: Literal["ack"] = "ack"
    offer_id: str


class CommandAck(_Control):
    """A dispatcher's command was forwarded; its outcome comes as ``command_result`` with the
    same ``command_id``."""

    type: Literal["ack"] = "ack"
    command: Literal["assign", "resolve"] | contracts.AlarmCommandKind
    command_id: str
    incident_id: str | None = Field(default=None, description="of assign and resolve")
    alarm_id: str | None = Field(default=None, description="of an alarm's commands")


class AdministrationAck(_Control):
    """A caregiver's medication log entry was forwarded; what became of it comes as
    ``administration_result`` with the same ``record_id``."""

    type: Literal["ack"] = "ack"
    command: Literal["administration"]
    record_id: str


class PongFrame(_Control):
    """The answer to ``ping``."""

    type: Literal["pong"] = "pong"


class Stamp(BaseModel):
    """What every message of a recipient's stream carries beside its frame's fields (control
    frames carry neither)."""

    seq: int = Field(ge=1, description="the recipient's counter: one more for each message")
    epoch: int = Field(
        ge=1, description="the stream it counts in: a new one when the stream was lost"
    )


class ConnectQuery(BaseModel):
    """The query of the WebSocket's URL; a ``token`` there is refused (4401: proxies and logs
    keep URLs)."""

    patient: str | None = Field(
        default=None, description="a family member's relative to follow (default: her first)"
    )
    last_seq: int | None = Field(
        default=None, ge=0, description="resume at once: what was kept after this seq"
    )
    epoch: int | None = Field(default=None, ge=0, description="the stream ``last_seq`` counts in")


class OwnTracksLastWill(BaseModel):
    """The last will the OwnTracks app sets: the broker publishes it when the phone drops off."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type_: Literal["lwt"] = Field(default="lwt", alias="_type")
    tst: int | None = Field(default=None, description="when the phone connected (epoch s)")


CONTROL_FRAMES: dict[str, tuple[type[BaseModel], ...]] = {
    "ack": (AnswerAck, CommandAck, AdministrationAck),
    "auth_ok": (AuthOkFrame,),
    "error": (ErrorFrame,),
    "hello": (HelloFrame,),
    "pong": (PongFrame,),
    "resync": (ResyncFrame,),
}
"""The frames the gateway writes itself, with no ``seq``."""


# ---------------------------------------------------------------- what the code says


def outbox_frames() -> dict[str, type[BaseModel]]:
    """The frames of recipients' streams, by type: every model of :mod:`kernel.contracts` whose
    ``type`` is one literal it defaults to."""
    found: dict[str, type[BaseModel]] = {}
    for obj in vars(contracts).values():
        if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
            continue
        if obj.__module__ != contracts.__name__:
            continue
        field = obj.model_fields.get("type")
        if field is None or get_origin(field.annotation) is not Literal:
            continue
        if isinstance(field.default, str) and get_args(field.annotation) == (field.default,):
            found[field.default] = obj
    return dict(sorted(found.items()))


def client_frames() -> dict[str, type[BaseModel]]:
    """The frames a client may send, by type: the models :func:`ws_gateway.session.parse_frame`
    takes (one model may take several types)."""
    found: dict[str, type[BaseModel]] = {}
    for model in get_args(session.Frame):
        for kind in get_args(model.model_fields["type"].annotation):
            found[kind] = model
    return dict(sorted(found.items()))


def sample_frame(kind: str) -> dict[str, Any]:
    """The least frame of ``kind`` the parser takes: its required fields, each a plain value."""
    model = client_frames()[kind]
    frame: dict[str, Any] = {"type": kind}
    for name, field in model.model_fields.items():
        if name == "type" or not field.is_required():
            continue
        annotation = field.annotation
        if get_origin(annotation) is Literal:
            frame[name] = get_args(annotation)[0]
        elif annotation in (int, float):
            frame[name] = 1
        elif annotation is str:
            frame[name] = "x"
        else:
            raise TypeError(f"{model.__name__}.{name}: no sample for {annotation}")
    return frame


def may_send(role: Role, kind: str) -> bool:
    """Whether the gateway handles a frame of ``kind`` from a client of ``role``, as its
    deciders judge it: anything but ``forbidden`` (a caregiver's answer to an offer that is not
    hers is refused too, but not for her role)."""
    claims = claims_of(role)
    frame = session.parse_frame(orjson.dumps(sample_frame(kind)))
    try:
        if isinstance(frame, session.Answer):
            session.decide_answer(claims, frame, {}, answer_id="a", now=1.0)
        elif isinstance(frame, session.Assign | session.Resolve):
            session.decide_command(claims, frame, command_id="c", now=1.0)
        elif isinstance(frame, session.AlarmHand):
            session.decide_alarm_hand(claims, frame, command_id="c", now=1.0)
        elif isinstance(frame, session.Administer):
            session.decide_administration(claims, frame, now=1.0)
    except RejectedInput as exc:
        return exc.reason != session.FORBIDDEN
    return True


RECEIVES: dict[str, tuple[str, ...]] = {
    "cg": (
        "offer",
        "offer_result",
        "incident",
        "visit_status",
        "dose",
        "administration_result",
    ),
    "patient": ("incident", "visit_status", "dose"),
    "agency": (
        "incident",
        "offer_status",
        "location",
        "alarm",
        "alert",
        "command_result",
        "dose",
    ),
}
"""The stream frames each kind of recipient is sent (``streams/``), by the prefix of its name
(:mod:`kernel.recipients`): a caregiver (``cg``) her offers and their results, her visits and
administrations, the incidents she is assigned, a missed dose at hand; a patient's family
(``patient``) her incidents, visits and doses; an agency's dispatchers (``agency``) all of its
incidents and their offers, locations, alarms, visit alerts, commands' outcomes and doses."""


def claims_of(role: Role) -> Claims:
    """A token's claims for ``role``, naming a patient (as a family's does)."""
    return Claims(role=role, sub="someone", agency="agency", exp=1e9, patients=["patient"])


def recipient_kind(role: Role) -> str:
    """The kind of recipient a token of ``role`` reads (:data:`RECEIVES`' keys), as the
    gateway resolves it."""
    return session.resolve_recipient(claims_of(role)).split(":", 1)[0]


def receives(role: Role) -> list[str]:
    """The stream frames a client of ``role`` is sent."""
    return list(RECEIVES[recipient_kind(role)])


CLOSE_CODES: dict[int, str] = {
    connection.CLOSE_UNAUTHORISED: "unauthorised: no genuine token (within"
    f" {conversation.AUTH_TIMEOUT_S:g} s of opening), a token in the URL, or the token"
    " expired or was revoked on the open connection",
    connection.CLOSE_FORBIDDEN: "forbidden: a family's token does not name the patient asked for",
    connection.CLOSE_POLICY: "rate_limited: went on sending over budget",
    connection.CLOSE_TOO_BIG: f"a frame over {session.MAX_FRAME_BYTES // 1024} KiB",
    connection.CLOSE_TRY_AGAIN_LATER: "try again later: too slow to keep up (its queue of"
    f" {connection.QUEUE_SIZE} messages overflowed), or the gateway lost Redis; reconnect"
    " and resume",
    connection.CLOSE_INTERNAL_ERROR: "internal error: the gateway failed sending what it is"
    " owed (or no pong came in time to its keepalive ping); reconnect and resume",
    1001: "going away: the gateway is stopping; reconnect and resume",
}


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    why: str
    topics: tuple[str, ...]
    """The channels it applies to (empty: every topic ingest reads)."""


EVERY = ()
LIMITS = Limits()
MQTT_REFUSALS: tuple[Refusal, ...] = (
    Refusal(
        "bad_topic",
        "not a topic ingest reads, or an id that is not 1 to 64 of A-Z a-z 0-9 _ . -",
        EVERY,
    ),
    Refusal(
        TOO_LARGE,
        f"a payload over {LIMITS.max_payload_bytes} bytes: refused as it arrives, never buffered",
        EVERY,
    ),
    Refusal("malformed_json", "not JSON, or not a JSON object", EVERY),
    Refusal("too_deep", "JSON nested deeper than 32 levels", EVERY),
    Refusal(
        "invalid_fields",
        "a field missing, of the wrong type or out of bounds (``detail`` names each)",
        EVERY,
    ),
    Refusal(
        "from_future",
        f"stamped ahead of ingest's clock: a device's ``ts`` more than"
        f" {LIMITS.max_clock_skew_s:g} s, a phone's ``tst`` more than"
        f" {LIMITS.max_fix_ahead_s:g} s",
        ("deviceEvents", "deviceTelemetry", "deviceStatus", "caregiverLocation", "ownTracks"),
    ),
    Refusal(
        "too_old",
        f"a device event older than {LIMITS.max_clock_skew_s:g} s (the replay"
        f" window), a telemetry sample older than {TELEMETRY_MAX_AGE_S / 3600:g} h",
        ("deviceEvents", "deviceTelemetry"),
    ),
    Refusal(
        "no_readings",
        "a telemetry sample with no vital, no battery and no rssi",
        ("deviceTelemetry",),
    ),
    Refusal(
        "out_of_range",
        "a vital no living person has (``detail`` gives the bounds)",
        ("deviceTelemetry",),
    ),
    Refusal(
        "bad_status",
        "a status that is not ``online``, ``offline`` or (a device's) a JSON heartbeat",
        ("deviceStatus", "caregiverStatus"),
    ),
    Refusal(
        "unknown_device",
        "no device of that id is registered",
        ("deviceEvents", "deviceTelemetry", "deviceStatus"),
    ),
    Refusal(
        "device_agency_mismatch",
        "the device is registered to another agency than the topic's",
        ("deviceEvents", "deviceTelemetry", "deviceStatus"),
    ),
    Refusal(
        "unknown_device_kind",
        "the device is of a kind the system does not know",
        ("deviceEvents", "deviceTelemetry", "deviceStatus"),
    ),
    Refusal(
        "event_not_for_kind",
        "an event type the device's kind never sends (a fall detector's ``dose_taken``)",
        ("deviceEvents",),
    ),
    Refusal(
        "unknown_caregiver",
        "no caregiver of that id is registered",
        ("caregiverLocation", "caregiverStatus"),
    ),
    Refusal(
        "caregiver_agency_mismatch",
        "the caregiver is registered to another agency than the topic's",
        ("caregiverLocation", "caregiverStatus"),
    ),
    Refusal(
        "unknown_owntracks_device",
        "``{user}/{device}`` is mapped to no caregiver (the API's phones)",
        ("ownTracks",),
    ),
    Refusal(
        owntracks.ENCRYPTED,
        "the app encrypts its payloads: turn its encryption off",
        ("ownTracks",),
    ),
    Refusal(owntracks.UNKNOWN_TYPE, "a ``_type`` OwnTracks does not document", ("ownTracks",)),
    Refusal(
        REGISTRY_UNAVAILABLE,
        "a publisher never seen while the registry's database was"
        " away longer than the message's patience: publish it again",
        EVERY,
    ),
    Refusal(INTERNAL_ERROR, "ingest failed on it (a fault of ingest's, logged)", EVERY),
)
"""Every reason ingest dead-letters an MQTT message for, and the topics it applies to."""


# ---------------------------------------------------------------- MQTT topics


@dataclass(frozen=True, slots=True)
class Payload:
    """One message a topic carries: a model's JSON, or plain text of a few words."""

    name: str
    summary: str
    model: type[BaseModel] | None = None
    words: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Topic:
    channel: str
    address: str
    title: str
    publisher: str
    description: str
    payloads: tuple[Payload, ...]
    qos: int
    retain: bool = False
    ingest_reads: bool = True


_PARAMETERS = {
    "agency": "the agency's id, as registered (1 to 64 of A-Z a-z 0-9 _ . -)",
    "device": "the device's id, as registered: also its broker username",
    "caregiver": "the caregiver's id, as registered: also her phone's broker username",
    "user": f"the OwnTracks app's user name ({OWNTRACKS_NAME}): also its broker username",
    "command": "the command's name",
}
_PLAIN_STATUS = tuple(sorted(w.decode() for w in DEVICE_STATUS_PAYLOADS))
_PRESENCE = tuple(sorted(w.decode() for w in PRESENCE_PAYLOADS))

TOPICS: tuple[Topic, ...] = (
    Topic(
        "deviceEvents",
        "ck/{agency}/dev/{device}/evt",
        "A home device's events",
        "home device",
        "A fall, an SOS, a dose taken or missed, a dispenser's state, an ambient sensor's"
        " motion, door, bed or chair. Ingest checks the device is the agency's and sends events"
        " of its kind; the same ``seq`` and ``ts`` again is the same event (sent at least"
        " once). Put ``data.sent_at`` (epoch s) for the publish time to be measured.",
        (Payload("deviceEvent", "an event", DeviceEventPayload),),
        qos=1,
    ),
    Topic(
        "deviceTelemetry",
        "ck/{agency}/dev/{device}/tel",
        "A home device's telemetry",
        "home device (vitals monitor)",
        "Vitals, one sample a message or a batch of 1 to"
        f" {TELEMETRY_BATCH_MAX} in the order taken; a bad sample refuses its whole message.",
        (
            Payload("telemetryReading", "one sample", TelemetryReading),
            Payload("telemetryBatch", "samples in the order taken", TelemetryBatch),
        ),
        qos=1,
    ),
    Topic(
        "deviceStatus",
        "ck/{agency}/dev/{device}/status",
        "A home device's status",
        "home device; the broker (its last will)",
        "Its birth (``online``) when it connects and its MQTT last will (``offline``), both"
        " retained at QoS 1; between them a heartbeat (JSON) at its kind's interval. A device"
        " silent past its interval, or whose will the broker publishes, is offline: an alarm.",
        (
            Payload("deviceHeartbeat", "a heartbeat", DeviceHeartbeatPayload),
            Payload("deviceBirthOrWill", "birth or last will (plain text)", words=_PLAIN_STATUS),
        ),
        qos=1,
        retain=True,
    ),
    Topic(
        "caregiverLocation",
        "ck/{agency}/cg/{caregiver}/loc",
        "A caregiver's phone's fixes",
        "caregiver's phone",
        "OwnTracks-compatible location JSON; a newer fix supersedes one lost, so QoS 0 will do.",
        (Payload("location", "a fix", LocationPayload),),
        qos=0,
    ),
    Topic(
        "caregiverStatus",
        "ck/{agency}/cg/{caregiver}/status",
        "A caregiver's phone's presence",
        "caregiver's phone; the broker (its last will)",
        "``online`` or ``offline``, retained at QoS 1; set ``offline`` as the phone's last"
        " will: gone offline, she is no dispatch candidate until her next fix.",
        (Payload("presence", "online or offline (plain text)", words=_PRESENCE),),
        qos=1,
        retain=True,
    ),
    Topic(
        "ownTracks",
        "owntracks/{user}/{device}",
        "The OwnTracks app, unchanged",
        "the OwnTracks app (MQTT mode)",
        "What the app publishes as it is. ``{user}/{device}`` is mapped to a caregiver"
        " through the API's phones; ``location`` is a fix, ``lwt`` her presence (offline);"
        f" the types {', '.join(sorted(owntracks.IGNORED_TYPES))} are counted, not refused.",
        (
            Payload("ownTracksLocation", "a fix (``_type`` location)", LocationPayload),
            Payload("ownTracksLastWill", "the app's last will", OwnTracksLastWill),
            Payload("ownTracksOther", "a type that is no fix: counted, not refused"),
        ),
        qos=1,
    ),
    Topic(
        "deviceCommands",
        "ck/{agency}/dev/{device}/cmd/{command}",
        "Commands to a device",
        "the services",
        "A device may subscribe to its own commands (``.../cmd/#``) and to nobody else's, and"
        " may not publish there. Reserved: none are sent yet.",
        (),
        qos=1,
        ingest_reads=False,
    ),
    Topic(
        "caregiverCommands",
        "ck/{agency}/cg/{caregiver}/cmd/{command}",
        "Commands to a caregiver's phone",
        "the services",
        "As a device's: her phone's own, to read only. Reserved: none are sent yet.",
        (),
        qos=1,
        ingest_reads=False,
    ),
    Topic(
        "ownTracksCommands",
        "owntracks/{user}/{device}/cmd",
        "Commands to an OwnTracks phone",
        "the services",
        "The app's ``cmd`` topic: the user may read her phones' and not publish there."
        " Reserved: none are sent yet.",
        (),
        qos=1,
        ingest_reads=False,
    ),
)


def subscription_of(address: str) -> str:
    """The MQTT filter an address stands for: each ``{parameter}`` a ``+``."""
    return "/".join("+" if level.startswith("{") else level for level in address.split("/"))


def ingest_subscriptions() -> set[str]:
    """What ingest subscribes to, whatever its streams."""
    return {topic for topics in STREAMS.values() for topic in topics}


# ---------------------------------------------------------------- the AsyncAPI document


def _schemas(
    models: Iterable[tuple[type[BaseModel], JsonSchemaMode]],
) -> tuple[dict[tuple[type[BaseModel], JsonSchemaMode], Any], dict[str, Any]]:
    """Each model's schema (a reference) and the schemas they refer to, by name."""
    unique = list(dict.fromkeys(models))
    refs, top = models_json_schema(unique, ref_template=SCHEMAS)
    by_model = {(key[0], key[1]): value for key, value in refs.items() if _is_model(key[0])}
    return by_model, top.get("$defs", {})


def _is_model(obj: object) -> TypeGuard[type[BaseModel]]:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _frame_payload(ref: Mapping[str, Any], kind: str, stamped: bool, shared: bool) -> Any:
    parts: list[Any] = [dict(ref)]
    if shared:  # one model takes several types: this message is of one
        parts.append({"properties": {"type": {"const": kind}}})
    if stamped:
        parts.append({"$ref": SCHEMAS.format(model="Stamp")})
    return parts[0] if len(parts) == 1 else {"allOf": parts}


def _doc(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").split())


SUMMARIES: dict[str, str] = {
    "accept": "A caregiver takes her offer.",
    "decline": "A caregiver declines her offer, and may say why.",
    "administration": "A caregiver logs a scheduled dose administered, refused or unavailable.",
    "assign": "A dispatcher gives an incident to a caregiver by hand.",
    "resolve": "A dispatcher closes an incident.",
    "acknowledge": "A dispatcher acknowledges an alarm: its ladder stops.",
    "clear": "A dispatcher clears an alarm.",
    "false_alarm": "A dispatcher clears an alarm as a false alarm.",
    "open_incident": "A dispatcher dispatches a caregiver to an alarm's patient.",
    "auth": "The token, as the first frame; later, a fresh token of the same person.",
    "resume": "Send what was kept after last_seq.",
    "ping": "Answered pong.",
    "offer": "An emergency a caregiver is asked to take, until expires_at.",
    "offer_result": "What became of a caregiver's offer.",
    "incident": "An incident as it stands, at each change.",
    "offer_status": "An offer of an incident as it stands: whom it asked, what became of it.",
    "visit_status": "A visit's state.",
    "dose": "What became of a dose.",
    "administration_result": "What became of a caregiver's administration log entry.",
    "location": "A caregiver's position and status.",
    "alarm": "An alarm as it stands, at each change.",
    "alert": "A visit alert raised or cleared.",
    "command_result": "What became of a dispatcher's command.",
    "hello": "The first frame: whom the token names, the recipient, where its stream stands.",
    "auth_ok": "A fresh token was taken.",
    "resync": "The stream was lost and started again: reload from what follows.",
    "error": "A frame, or the connection, refused: a stable reason and a detail.",
    "ack": "An answer, command or log entry was forwarded; its outcome follows.",
    "pong": "The answer to ping.",
}
"""One line for each frame, for the document's readers (its fields are its model's)."""


def _summary(kind: str) -> str:
    summary = SUMMARIES.get(kind)
    if summary is None:
        raise KeyError(f"the {kind} frame has no line in SUMMARIES: give it one")
    return summary


def _gateway_messages(
    refs: Mapping[tuple[type[BaseModel], JsonSchemaMode], Any],
) -> dict[str, Any]:
    messages: dict[str, Any] = {}
    clients = client_frames()
    shared = {
        kind
        for kind, model in clients.items()
        if len(get_args(model.model_fields["type"].annotation)) > 1
    }
    for kind, model in clients.items():
        lane = lane_of(kind)
        messages[kind] = {
            "name": kind,
            "title": f"{kind} (client to gateway)",
            "summary": _summary(kind),
            "description": _doc(model),
            "contentType": "application/json",
            "payload": _frame_payload(refs[(model, "validation")], kind, False, kind in shared),
            "tags": [{"name": "client"}, {"name": f"budget:{lane}"}],
        }
    for kind, outbox_model in outbox_frames().items():
        messages[kind] = {
            "name": kind,
            "title": f"{kind} (gateway to client, in the recipient's stream)",
            "summary": _summary(kind),
            "description": _doc(outbox_model),
            "contentType": "application/json",
            "payload": _frame_payload(refs[(outbox_model, "serialization")], kind, True, False),
            "tags": [{"name": "gateway"}, {"name": "stream"}],
        }
    for kind, models in CONTROL_FRAMES.items():
        refs_of = [refs[(m, "serialization")] for m in models]
        messages[kind] = {
            "name": kind,
            "title": f"{kind} (gateway to client, no seq)",
            "summary": _summary(kind),
            "description": " ".join(_doc(m) for m in models),
            "contentType": "application/json",
            "payload": refs_of[0] if len(refs_of) == 1 else {"oneOf": refs_of},
            "tags": [{"name": "gateway"}, {"name": "control"}],
        }
    return dict(sorted(messages.items()))


def _topic_messages(
    topic: Topic, refs: Mapping[tuple[type[BaseModel], JsonSchemaMode], Any]
) -> dict[str, Any]:
    messages: dict[str, Any] = {}
    for payload in topic.payloads:
        message: dict[str, Any] = {"name": payload.name, "summary": payload.summary}
        if payload.model is not None:
            message["title"] = payload.model.__name__
            message["description"] = _doc(payload.model)
            message["contentType"] = "application/json"
            message["payload"] = refs[(payload.model, "validation")]
        elif payload.words:
            message["contentType"] = "text/plain"
            message["payload"] = {"type": "string", "enum": list(payload.words)}
        else:
            message["contentType"] = "application/json"
            message["payload"] = {
                "type": "object",
                "properties": {"_type": {"enum": sorted(owntracks.IGNORED_TYPES)}},
                "required": ["_type"],
            }
        message["bindings"] = {"mqtt": {"bindingVersion": "0.2.0"}}
        messages[payload.name] = message
    return messages


def _topic_channel(
    topic: Topic, refs: Mapping[tuple[type[BaseModel], JsonSchemaMode], Any]
) -> dict[str, Any]:
    params = [level[1:-1] for level in topic.address.split("/") if level.startswith("{")]
    refusals = [
        {"reason": r.reason, "why": r.why}
        for r in MQTT_REFUSALS
        if topic.ingest_reads and (not r.topics or topic.channel in r.topics)
    ]
    channel: dict[str, Any] = {
        "address": topic.address,
        "title": topic.title,
        "description": f"Published by: {topic.publisher}. {topic.description}",
        "servers": [{"$ref": "#/servers/broker"}, {"$ref": "#/servers/brokerTls"}],
        "parameters": {p: {"description": _PARAMETERS[p]} for p in params},
        "messages": _topic_messages(topic, refs),
        "x-qos": topic.qos,
        "x-retain": topic.retain,
    }
    if refusals:
        channel["x-refused"] = refusals
    return channel


def _operation(
    action: Literal["send", "receive"],
    channel: str,
    title: str,
    messages: Iterable[str],
    bindings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "title": title,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
    }
    if bindings:
        op["bindings"] = bindings
    return op


def _gateway_operations() -> dict[str, Any]:
    ops: dict[str, Any] = {}
    clients = list(client_frames())
    for role in ROLES:
        sends = [kind for kind in clients if may_send(role, kind)]
        answered = any(lane_of(kind) != "other" for kind in sends)
        control = [k for k in CONTROL_FRAMES if k != "ack" or answered]
        ops[f"{role}Sends"] = _operation(
            "receive", "gateway", f"What a {role}'s client may send", sends
        )
        ops[f"{role}Receives"] = _operation(
            "send",
            "gateway",
            f"What a {role}'s client is sent",
            sorted([*receives(role), *control]),
        )
    return ops


def _topic_operations() -> dict[str, Any]:
    ops: dict[str, Any] = {}
    for topic in TOPICS:
        if not topic.payloads:
            continue
        binding = {"mqtt": {"qos": topic.qos, "retain": topic.retain, "bindingVersion": "0.2.0"}}
        ops[f"publish{topic.channel[0].upper()}{topic.channel[1:]}"] = _operation(
            "receive",
            topic.channel,
            f"{topic.publisher} publishes: {topic.title.lower()}",
            [p.name for p in topic.payloads],
            binding,
        )
    return ops


def _defaults() -> dict[str, Any]:
    fields = Settings.model_fields
    return {name: fields[name].default for name in ("gateway_host", "gateway_port")}


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the gateway and the MQTT topics."""
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((m, "validation") for m in client_frames().values()),
        *((m, "serialization") for m in outbox_frames().values()),
        *((m, "serialization") for ms in CONTROL_FRAMES.values() for m in ms),
        (Stamp, "validation"),
        *((p.model, "validation") for t in TOPICS for p in t.payloads if p.model is not None),
    ]
    refs, schemas = _schemas(wanted)
    defaults = _defaults()
    limits = FrameLimits()
    gateway_channel: dict[str, Any] = {
        "address": WEBSOCKET_PATH,
        "title": "The WebSocket gateway",
        "description": "One connection reads one recipient's stream: a caregiver's, a"
        " patient's family's or an agency's dispatchers'. Frames are JSON text, one object"
        " each, with a ``type``; stream frames carry ``seq`` and ``epoch``, control frames"
        " neither. See docs/protocol.md.",
        "servers": [{"$ref": "#/servers/gateway"}, {"$ref": "#/servers/gatewayTls"}],
        "messages": _gateway_messages(refs),
        "bindings": {
            "ws": {
                "method": "GET",
                "query": ConnectQuery.model_json_schema(),  # inline: a reference is ambiguous here
                "headers": {
                    "type": "object",
                    "properties": {
                        "Authorization": {
                            "type": "string",
                            "description": "Bearer {token}; else the first frame is auth",
                        },
                        "Origin": {
                            "type": "string",
                            "description": "a browser page's: it must be an allowed origin",
                        },
                    },
                },
                "bindingVersion": "0.1.0",
            }
        },
        "x-close-codes": {str(code): why for code, why in sorted(CLOSE_CODES.items())},
        "x-error-reasons": dict(sorted(GATEWAY_REASONS.items())),
        "x-budgets": {
            "lanes": {kind: lane_of(kind) for kind in client_frames()},
            "rate_per_s": limits.rate,
            "burst": limits.burst,
            "max_frame_bytes": session.MAX_FRAME_BYTES,
            "kept_per_recipient": OUTBOX_MAXLEN,
        },
    }
    channels: dict[str, Any] = {"gateway": gateway_channel}
    for topic in TOPICS:
        channels[topic.channel] = _topic_channel(topic, refs)
    return {
        "asyncapi": "3.0.0",
        "id": "urn:careknot:dispatch",
        "info": {
            "title": "CareKnot Dispatch: the WebSocket gateway and the MQTT topics",
            "version": "1",
            "description": "The frames of the WebSocket gateway, both ways and per role, and"
            " the MQTT topics devices and phones publish on. Operations are CareKnot's:"
            " ``receive`` is what a client publishes or sends, ``send`` what it is sent."
            " Written by ``careknot docs`` from the code; read docs/protocol.md beside it."
            " The HTTP API is docs/openapi.json.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "gateway": _server("ws", "{host}:{port}", defaults, "the gateway without TLS"),
            "gatewayTls": _server(
                "wss", "{host}:{port}", defaults, "the gateway with TLS (gateway_tls_cert set)"
            ),
            "broker": _broker("mqtt", 1883, "the MQTT broker (MQTT 3.1.1 or 5)"),
            "brokerTls": _broker("secure-mqtt", 8883, "the MQTT broker over TLS (mqtts://)"),
        },
        "channels": channels,
        "operations": {**_gateway_operations(), **_topic_operations()},
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "gatewayToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A short-lived token (``careknot token``, or the agency's"
                    " identity service): in an Authorization header or a first ``auth``"
                    " frame, never in the URL.",
                },
                "brokerPassword": {
                    "type": "userPassword",
                    "description": "Each device and phone its own: its id as username, the"
                    " password the API gave when it was registered.",
                },
            },
        },
    }


def _server(protocol: str, host: str, defaults: Mapping[str, Any], what: str) -> dict[str, Any]:
    return {
        "host": host,
        "pathname": WEBSOCKET_PATH,
        "protocol": protocol,
        "description": what,
        "variables": {
            "host": {"default": str(defaults["gateway_host"])},
            "port": {"default": str(defaults["gateway_port"])},
        },
        "security": [{"$ref": "#/components/securitySchemes/gatewayToken"}],
    }


def _broker(protocol: str, port: int, what: str) -> dict[str, Any]:
    return {
        "host": "{host}:{port}",
        "protocol": protocol,
        "description": what,
        "variables": {"host": {"default": "127.0.0.1"}, "port": {"default": str(port)}},
        "security": [{"$ref": "#/components/securitySchemes/brokerPassword"}],
    }


# ---------------------------------------------------------------- the files


def openapi() -> dict[str, Any]:
    """The HTTP API's OpenAPI document, as its app serves it at ``/openapi.json``."""
    from api.app import create_app

    document: dict[str, Any] = create_app(Settings(token_keys=DOCS_TOKEN_KEY)).openapi()
    return document


def dumps(document: Mapping[str, Any]) -> str:
    """The document as committed: sorted keys, two spaces, a newline at the end."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def documents() -> dict[str, str]:
    """Each file's name and text."""
    return {ASYNCAPI: dumps(asyncapi()), OPENAPI: dumps(openapi())}


def write(out: Path, check: bool = False) -> list[str]:
    """Write the documents into ``out`` (or, with ``check``, only compare): the names of those
    that were not as the code gives them."""
    stale = []
    for name, text in documents().items():
        path = out / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not check:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return stale


def default_out() -> Path:
    """``docs/`` beside the package, where the documents are committed."""
    return Path(__file__).resolve().parents[1] / "docs"
