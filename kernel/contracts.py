"""Message contracts: MQTT payloads (v1), Kafka events between services, WebSocket frames.

MQTT and WebSocket shapes are the product's interface: change them only additively.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

DEVICE_EVENT_TYPES = (
    "fall",
    "sos",
    "dose_taken",
    "dose_missed",
    "dispenser_tamper",
    "motion",
    "door_open",
    "door_closed",
)
DeviceEventType = Literal[
    "fall",
    "sos",
    "dose_taken",
    "dose_missed",
    "dispenser_tamper",
    "motion",
    "door_open",
    "door_closed",
]
IncidentState = Literal["open", "offered", "assigned", "escalated", "resolved"]
OfferOutcome = Literal["assigned", "taken", "expired", "cancelled"]
Role = Literal["caregiver", "family", "dispatcher"]


# ---------------------------------------------------------------- MQTT payloads (contract)


class LocationPayload(BaseModel):
    """OwnTracks-compatible location published by a caregiver's phone."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type_: Literal["location"] = Field(default="location", alias="_type")
    lat: float = Field(ge=-90.0, le=90.0, allow_inf_nan=False)
    lon: float = Field(ge=-180.0, le=180.0, allow_inf_nan=False)
    tst: int = Field(gt=0, description="epoch seconds of the fix")
    acc: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    vel: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    cog: float | None = Field(default=None, allow_inf_nan=False)
    batt: int | None = Field(default=None, ge=0, le=100)
    alt: float | None = Field(default=None, allow_inf_nan=False)


class DeviceEventPayload(BaseModel):
    """An event from a home device."""

    model_config = ConfigDict(extra="forbid")

    type: DeviceEventType
    ts: float = Field(gt=0, allow_inf_nan=False)
    seq: int = Field(ge=0)
    data: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------- Kafka events (internal)


class FixEvent(BaseModel):
    """An accepted caregiver location, as carried on the fixes topic."""

    event_id: str
    agency_id: str
    caregiver_id: str
    lat: float
    lon: float
    ts: float
    acc: float | None = None
    vel: float | None = None
    batt: int | None = None
    received_at: float


class DeviceEvent(BaseModel):
    """A validated device event, as carried on the device-events topic."""

    event_id: str
    agency_id: str
    device_id: str
    type: DeviceEventType
    ts: float
    seq: int
    data: dict[str, Any] = Field(default_factory=dict)
    received_at: float
    published_at: float | None = Field(
        default=None, description="device-side publish time when the device sends it (data.sent_at)"
    )


class Presence(BaseModel):
    """A caregiver's phone went away (the MQTT last will the broker published for it), as
    carried on the presence topic: she is offline until her next fix."""

    event_id: str
    agency_id: str
    caregiver_id: str
    online: bool
    at: float = Field(description="when ingest received the notice (epoch s)")
    source: str = Field(description="MQTT topic it came from")


class DeadLetter(BaseModel):
    """Input refused at a boundary, with the reason in a machine-readable code."""

    reason: str
    detail: str = ""
    source: str = Field(description="MQTT topic or WebSocket subject it came from")
    payload: str = Field(description="the raw input, truncated")
    received_at: float
    truncated: bool | None = Field(
        default=None,
        description="the payload was cut short, so it cannot be replayed as it was (None: not"
        " recorded, as in letters from before the field)",
    )


class OfferAnswer(BaseModel):
    """A caregiver's accept or decline, forwarded by the gateway."""

    answer_id: str
    offer_id: str
    incident_id: str
    caregiver_id: str
    agency_id: str
    answer: Literal["accept", "decline"]
    reason: str | None = None
    at: float


class DispatcherCommand(BaseModel):
    """A dispatcher's ``assign`` (an incident to a caregiver, by hand) or ``resolve``, as the
    gateway produces it to the offer-answers topic keyed by incident, beside caregivers'
    answers, so one worker handles an incident's answers and commands in order. Its agency and
    dispatcher come from her token; the worker checks the incident and caregiver are the
    agency's."""

    command_id: str
    command: Literal["assign", "resolve"]
    incident_id: str = Field(min_length=1, max_length=128)
    agency_id: str
    dispatcher_id: str
    caregiver_id: str | None = Field(default=None, max_length=128)
    note: str | None = Field(default=None, max_length=500)
    at: float

    @property
    def actor(self) -> str:
        return f"dispatcher:{self.dispatcher_id}"


class AlarmCommand(BaseModel):
    """A dispatcher's ``acknowledge`` or ``clear`` of an alarm of her agency, as the gateway
    produces it to the offer-answers topic keyed by alarm."""

    command_id: str
    command: Literal["acknowledge", "clear"]
    alarm_id: str = Field(min_length=1, max_length=128)
    agency_id: str
    dispatcher_id: str
    at: float

    @property
    def actor(self) -> str:
        return f"dispatcher:{self.dispatcher_id}"


AnswerOrCommand = OfferAnswer | DispatcherCommand | AlarmCommand
"""What the offer-answers topic carries, told apart by its fields (an answer's ``answer_id`` and
``answer``, a command's ``command_id`` and ``command`` with ``incident_id`` or ``alarm_id``), never
by what a free-text field says."""
ANSWERS_AND_COMMANDS: TypeAdapter[AnswerOrCommand] = TypeAdapter(AnswerOrCommand)


# ---------------------------------------------------------------- WebSocket frames (contract)


class IncidentSummary(BaseModel):
    """What a caregiver sees of an incident in an offer."""

    incident_id: str
    kind: str
    severity: int
    lat: float = Field(description="patient's approximate location (rounded)")
    lon: float
    distance_m: float
    eta_s: float


class OfferFrame(BaseModel):
    type: Literal["offer"] = "offer"
    offer_id: str
    incident: IncidentSummary
    expires_at: float


class OfferResultFrame(BaseModel):
    type: Literal["offer_result"] = "offer_result"
    offer_id: str
    outcome: OfferOutcome


class IncidentFrame(BaseModel):
    type: Literal["incident"] = "incident"
    incident_id: str
    patient_id: str
    kind: str
    state: IncidentState
    assignee_id: str | None = None
    assignee_name: str | None = None
    eta_s: float | None = None
    lat: float | None = Field(default=None, description="the home's approximate location (~100 m)")
    lon: float | None = None
    trigger: str | None = Field(
        default=None, description="the kind of a new trigger from the home that joined it"
    )
    at: float


class CommandResultFrame(BaseModel):
    """What became of a dispatcher's command once the worker decided, to her agency's
    dispatchers: ``done``, or ``refused`` with the ``reason`` (``unknown_incident``,
    ``other_agency``, ``not_waiting``, ``unknown_caregiver``, ``already_resolved``,
    ``unknown_alarm``)."""

    type: Literal["command_result"] = "command_result"
    command_id: str
    command: Literal["assign", "resolve", "acknowledge", "clear"]
    incident_id: str | None = None
    alarm_id: str | None = None
    dispatcher_id: str
    outcome: Literal["done", "refused"]
    reason: str | None = None
    at: float


class AlarmFrame(BaseModel):
    """An alarm as it stands, to its agency's dispatchers, each time it changes."""

    type: Literal["alarm"] = "alarm"
    alarm_id: str
    source: str
    kind: str
    severity: str
    status: Literal["active_unack", "active_ack", "cleared_unack", "cleared_ack"]
    count: int
    patient_id: str | None = None
    detail: str = ""
    raised_at: float
    acknowledged_by: str | None = None
    assignee: str | None = None
    climbed: int = Field(default=0, description="rungs of its escalation ladder climbed")
    at: float


class DoseFrame(BaseModel):
    """What became of a dose, to the patient's family and the agency's dispatchers: ``overdue``
    (untaken, past the part of its window when a person is asked to look), ``taken``, ``late``
    or ``missed`` (its window closed untaken: silence is the signal)."""

    type: Literal["dose"] = "dose"
    patient_id: str
    dose_key: str
    name: str
    due_at: float
    outcome: Literal["overdue", "taken", "late", "missed"]
    critical: bool = False
    at: float


class LocationFrame(BaseModel):
    type: Literal["location"] = "location"
    caregiver_id: str
    lat: float
    lon: float
    h3: str
    ts: float
    status: str


VisitState = Literal["scheduled", "en_route", "arrived", "in_visit", "left", "missed"]
AlertKind = Literal["late", "missed", "early_departure", "unscheduled_home"]


class VisitStatusFrame(BaseModel):
    """A visit's state, to the patient's family (and the caregiver herself)."""

    type: Literal["visit_status"] = "visit_status"
    patient_id: str
    caregiver_id: str
    visit_id: str
    state: VisitState
    eta_s: float | None = Field(default=None, description="seconds, while en_route")
    at: float


class AlertFrame(BaseModel):
    """A visit alert raised or cleared, to the agency's dispatchers."""

    type: Literal["alert"] = "alert"
    alert_id: str = Field(description="names the condition: the same id is raised, then cleared")
    kind: AlertKind
    state: Literal["raised", "cleared"]
    agency_id: str
    patient_id: str
    caregiver_id: str
    visit_id: str | None = None
    at: float
