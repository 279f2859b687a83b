"""Message contracts: MQTT payloads (v1), Kafka events between services, WebSocket frames.

MQTT and WebSocket shapes are the product's interface: change them only additively.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from vitals.measures import MEASURES, Measure

DEVICE_EVENT_TYPES = (
    "fall",
    "sos",
    "dose_taken",
    "dose_missed",
    "dispenser_tamper",
    "motion",
    "door_open",
    "door_closed",
    "dose_due",
    "dose_late",
    "dose_double_attempt",
    "dispenser_jam",
    "dispenser_low_supply",
    "dispenser_refilled",
    "bed_in",
    "bed_out",
    "chair_in",
    "chair_out",
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
    "dose_due",
    "dose_late",
    "dose_double_attempt",
    "dispenser_jam",
    "dispenser_low_supply",
    "dispenser_refilled",
    "bed_in",
    "bed_out",
    "chair_in",
    "chair_out",
]
ACTIVITY_EVENT_TYPES = frozenset(
    {"motion", "door_open", "door_closed", "bed_in", "bed_out", "chair_in", "chair_out"}
)
"""Events of a home's routine (ambient sensors): kept and learnt from, never acted on one by one,
so they travel apart from those that act (``keys.HOME_ACTIVITY``)."""
IncidentState = Literal["open", "offered", "assigned", "escalated", "resolved"]
OfferOutcome = Literal["assigned", "taken", "expired", "cancelled"]
OWNTRACKS_NAME = r"[A-Za-z0-9_.@\-]{1,64}"
"""An OwnTracks user name or device id, as a level of ``owntracks/{user}/{device}``."""
Role = Literal["caregiver", "family", "dispatcher", "admin"]


# ---------------------------------------------------------------- MQTT payloads (contract)


class FamilyContact(BaseModel):
    """Someone of a patient's family to call: sealed with her details."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    relation: str = Field(default="", max_length=60, description="daughter, neighbour, ...")
    phone: str = Field(default="", max_length=40)
    email: str = Field(default="", max_length=200)


class PatientDetails(BaseModel):
    """A patient's personal details beyond her name, kept sealed under her data key as one
    value (``kernel.sealing``): gone with her key when she is forgotten."""

    model_config = ConfigDict(extra="forbid")

    address: str = Field(default="", max_length=500)
    access: str = Field(
        default="", max_length=500, description="how a caregiver gets in: a key safe, a neighbour"
    )
    notes: str = Field(default="", max_length=4000)
    family: list[FamilyContact] = Field(default_factory=list, max_length=20)


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


SEQ_MAX = 2**63 - 1
"""The highest counter a device or a client may send (a ``seq``, an ``epoch``): a signed 64-bit
integer, as Postgres keeps it (``bigint``) and Redis counts. pydantic takes any integer, even
one written as text, and orjson writes none wider than 64 bits."""


class DeviceEventPayload(BaseModel):
    """An event from a home device."""

    model_config = ConfigDict(extra="forbid")

    type: DeviceEventType
    ts: float = Field(gt=0, allow_inf_nan=False)
    seq: int = Field(ge=0, le=SEQ_MAX)
    data: dict[str, Any] = Field(default_factory=dict)


TELEMETRY_BATCH_MAX = 60
"""Samples one telemetry message may carry: a minute of readings a second, or a monitor's
buffer emptied after a dropout."""


class TelemetryReading(BaseModel):
    """One telemetry sample of a home device (``ck/{agency}/dev/{device}/tel``): when it was
    taken (``ts``, epoch s) and the device's counter (``seq``), the vitals it measures (heart
    rate ``hr`` in bpm, ``spo2`` in %, skin or body temperature ``temp`` in °C, blood pressure
    ``bp_sys`` / ``bp_dia`` in mmHg: several at once, each where the device has it) and its
    own state (``battery`` %, ``rssi`` dBm). Fields it does not know are ignored."""

    model_config = ConfigDict(extra="ignore")

    ts: float = Field(gt=0, allow_inf_nan=False)
    seq: int = Field(ge=0, le=SEQ_MAX)
    hr: float | None = Field(default=None, allow_inf_nan=False)
    spo2: float | None = Field(default=None, allow_inf_nan=False)
    temp: float | None = Field(default=None, allow_inf_nan=False)
    bp_sys: float | None = Field(default=None, allow_inf_nan=False)
    bp_dia: float | None = Field(default=None, allow_inf_nan=False)
    battery: int | None = Field(default=None, ge=0, le=100)
    rssi: float | None = Field(default=None, allow_inf_nan=False)


class TelemetryBatch(BaseModel):
    """Several samples in one message: ``{"samples": [reading, ...]}``, in the order taken."""

    model_config = ConfigDict(extra="forbid")

    samples: list[TelemetryReading] = Field(min_length=1, max_length=TELEMETRY_BATCH_MAX)


DEVICE_STATUS_PAYLOADS: dict[bytes, Literal["online", "offline"]] = {
    b"online": "online",
    b"offline": "offline",
}
"""The plain payloads of a device's ``status`` topic: its birth message and its MQTT last will,
both retained (anything else there is a heartbeat, JSON)."""


class DeviceHeartbeatPayload(BaseModel):
    """A home device's heartbeat on its ``status`` topic: when it was sent (``ts``, epoch s),
    its ``battery`` (%), and where it has them its signal (``rssi``, dBm), ``firmware``, how
    often it beats (``interval``, s: else its kind's interval is expected) and whether its case
    is open (``tamper``). Fields it does not know are ignored: a heartbeat refused for a field
    added by newer firmware would make a live device look dead."""

    model_config = ConfigDict(extra="ignore")

    ts: float = Field(gt=0, allow_inf_nan=False)
    battery: int = Field(ge=0, le=100)
    rssi: float | None = Field(default=None, ge=-200.0, le=50.0, allow_inf_nan=False)
    firmware: str | None = Field(default=None, max_length=64)
    interval: float | None = Field(default=None, gt=0, le=86_400.0, allow_inf_nan=False)
    tamper: bool | None = None


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


class TelemetrySample(BaseModel):
    """A telemetry sample ingest accepted, as carried on the telemetry topic (packed in JSON
    arrays, keyed by device); ``(device_id, ts)`` names it."""

    agency_id: str
    device_id: str
    ts: float
    seq: int
    hr: float | None = None
    spo2: float | None = None
    temp: float | None = None
    bp_sys: float | None = None
    bp_dia: float | None = None
    battery: int | None = None
    rssi: float | None = None
    received_at: float


def vitals_of(sample: TelemetryReading | TelemetrySample) -> dict[Measure, float]:
    """The vitals a telemetry sample carries, by measure."""
    values = {m: getattr(sample, m) for m in MEASURES}
    return {m: v for m, v in values.items() if v is not None}


class DeviceStatus(BaseModel):
    """What a home device said on its ``status`` topic, as carried on the device-status topic
    (keyed by device): a ``heartbeat`` with what it reports, or ``online`` / ``offline`` (its
    birth, its last will). ``received_at`` is ingest's clock, by which its silence is judged
    (a device's own clock may be minutes off)."""

    event_id: str
    agency_id: str
    device_id: str
    status: Literal["heartbeat", "online", "offline"]
    received_at: float
    ts: float | None = Field(default=None, description="the heartbeat's own time (epoch s)")
    battery: int | None = None
    rssi: float | None = None
    firmware: str | None = None
    interval_s: float | None = None
    tamper: bool | None = None


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


class AccessRecord(BaseModel):
    """Someone read what a recipient is sent (a patient's family channel, an agency's
    dispatchers', a caregiver's): as the gateway produces it to the access-log topic when a
    connection is authenticated, and the audit keeps it."""

    record_id: str
    agency_id: str
    role: Role
    subject: str
    recipient: str
    patient_id: str | None = None
    via: Literal["gateway", "api"] = "gateway"
    what: Literal["connected", "refreshed", "read"] = "connected"
    """``read``: a patient's record read through the API."""
    at: float


ROUTINE_MONITOR = "routine-monitor"
"""The dispatcher id of the commands the routine monitor sends itself."""
AlarmCommandKind = Literal["acknowledge", "clear", "false_alarm", "open_incident"]


class AlarmCommand(BaseModel):
    """A dispatcher's hand on an alarm of her agency, as the gateway produces it to the
    offer-answers topic keyed by alarm: ``acknowledge`` (its ladder stops), ``clear``,
    ``false_alarm`` (clear it, and keep her word as a label a routine model learns from) or
    ``open_incident`` (dispatch a caregiver to the alarm's patient). The routine monitor sends
    ``open_incident`` itself when unusual inactivity persists (dispatcher ``routine-monitor``)."""

    command_id: str
    command: AlarmCommandKind
    alarm_id: str = Field(min_length=1, max_length=128)
    agency_id: str
    dispatcher_id: str
    at: float

    @property
    def actor(self) -> str:
        return f"dispatcher:{self.dispatcher_id}"


AdministrationAction = Literal["administered", "refused", "unavailable"]


class Administration(BaseModel):
    """A caregiver's entry in a patient's medication administration log (a scheduled dose
    administered, refused by the patient, or unavailable), as the gateway produces it to the
    offer-answers topic keyed by patient. ``record_id`` is the caregiver's own id for the
    entry: the same entry sent again is recorded once. Her agency and id come from her token;
    the worker checks she is on a visit to the patient and the dose is scheduled."""

    record_id: str = Field(min_length=1, max_length=128)
    caregiver_id: str
    agency_id: str
    patient_id: str = Field(min_length=1, max_length=128)
    dose_key: str = Field(min_length=1, max_length=200)
    action: AdministrationAction
    given_at: float = Field(description="when she says it happened (epoch s)")
    note: str | None = Field(default=None, max_length=500)
    at: float = Field(description="when the gateway received it (epoch s)")


AnswerOrCommand = OfferAnswer | DispatcherCommand | AlarmCommand | Administration
"""What the offer-answers topic carries, told apart by its fields (an answer's ``answer_id`` and
``answer``, a command's ``command_id`` and ``command`` with ``incident_id`` or ``alarm_id``, an
administration's ``record_id`` and ``action``), never by what a free-text field says."""
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


OfferState = Literal["offered", "accepted", "declined", "expired", "taken", "cancelled"]


class OfferStatusFrame(BaseModel):
    """An offer of an incident as it stands, to the agency's dispatchers, at each change:
    ``offered`` (to the caregiver, until ``expires_at``), then ``accepted`` (she took the
    incident), ``declined`` (she said no), ``expired`` (no answer in time), ``taken`` (someone
    else took the incident first, or a dispatcher assigned it by hand) or ``cancelled`` (the
    incident was resolved)."""

    type: Literal["offer_status"] = "offer_status"
    offer_id: str
    incident_id: str
    caregiver_id: str
    state: OfferState
    expires_at: float | None = Field(default=None, description="while offered: its window's end")
    eta_s: float | None = Field(default=None, description="while offered: her estimated travel")
    at: float


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
    command: Literal["assign", "resolve"] | AlarmCommandKind
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


DoseOutcome = Literal[
    "overdue",
    "taken",
    "late",
    "missed",
    "administered",
    "refused",
    "unavailable",
    "double_attempt",
]


class DoseFrame(BaseModel):
    """What became of a dose, to the patient's family and the agency's dispatchers (a missed
    one to the caregiver at hand too): ``overdue`` (untaken, past the part of its window when a
    person is asked to look), ``taken``, ``late`` or ``missed`` (its window closed untaken:
    silence is the signal); a caregiver's log entry, ``administered``, ``refused`` (by the
    patient) or ``unavailable``, with her ``visit_id``; ``double_attempt``, a second dispense
    tried for a dose already taken (an overdose risk)."""

    type: Literal["dose"] = "dose"
    patient_id: str
    dose_key: str
    name: str
    due_at: float
    outcome: DoseOutcome
    critical: bool = False
    visit_id: str | None = None
    at: float


class AdministrationResultFrame(BaseModel):
    """What became of a caregiver's administration log entry, to her: ``done``, or
    ``refused`` with the ``reason`` (``unscheduled_dose``, ``not_on_visit``, ``not_due``,
    ``already_taken``, ``other_agency``)."""

    type: Literal["administration_result"] = "administration_result"
    record_id: str
    patient_id: str
    dose_key: str
    action: AdministrationAction
    outcome: Literal["done", "refused"]
    reason: str | None = None
    visit_id: str | None = None
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
    caregiver_name: str | None = Field(default=None, description="her name, as families know her")
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
