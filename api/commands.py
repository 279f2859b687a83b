"""A dispatcher's hand as API calls: assign an incident to a caregiver or resolve it
(``.../incidents/{id}/assign``, ``.../resolve``), and acknowledge, clear, mark a false alarm or
open an incident from an alarm (``.../alarms/{id}/{command}``).

Each becomes the command the gateway's frames become (``kernel.commands``: stamped with her
agency and id from her token), produced to the offer-answers topic keyed by its incident or
alarm, so the dispatch worker handles it in order with the incident's answers and decides it
as it decides the gateway's. The call is answered 202 with the command's id once Kafka has it;
``GET .../commands/{id}`` reads what became of it (``pending``, ``done``, or ``refused`` with
the worker's reason), from the command log (``adapters.storage.commands``).

An ``Idempotency-Key`` names the command: sent again with the same key (a retry after a lost
answer) it is the same command, decided once; the same key asking something else is 422
``idempotency_key_reused``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Header, Path, Request, Response
from pydantic import BaseModel, Field

from adapters.kafka import Producer
from adapters.storage.agency_reads import AgencyReads
from adapters.storage.alarms import AlarmStore
from adapters.storage.commands import CommandLog
from api.auth import Caller, may_dispatch, may_manage
from api.problems import Refused
from api.resources import ID, TEXT, AgencyId
from api.windows import iso
from kernel import commands, keys
from kernel.contracts import AlarmCommand, AlarmCommandKind, DispatcherCommand
from kernel.errors import RejectedInput, StorageError
from kernel.tokens import Claims

IncidentId = Annotated[str, Path(pattern=ID, description="the incident's id")]
AlarmId = Annotated[str, Path(pattern=ID, description="the alarm's id")]
CommandId = Annotated[str, Path(pattern=ID, description="the command's id, as answered")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        pattern=r"^[\x21-\x7e]{1,128}$",
        description="the client's own name for the command: a retry with it is one command",
    ),
]
ACCEPTED: dict[int | str, dict[str, str]] = {
    202: {"description": "sent to the dispatch worker: read the outcome at Location"},
    404: {"description": "no such incident or alarm of the agency"},
    422: {"description": "the Idempotency-Key named another command"},
    503: {"description": "Kafka did not take it: try again (with the same key)"},
}

T = TypeVar("T")

router = APIRouter(prefix="/v1/agencies/{agency_id}", tags=["commands"])


class AssignIn(BaseModel):
    caregiver_id: str = Field(pattern=ID, description="a caregiver of the agency")


class ResolveIn(BaseModel):
    note: str | None = Field(default=None, max_length=500, pattern=TEXT)


class Accepted(BaseModel):
    command_id: str
    command: str
    outcome: str = Field(description="where to read what became of it")


class CommandOutcome(BaseModel):
    command_id: str
    command: str | None
    incident_id: str | None
    alarm_id: str | None
    outcome: Literal["pending", "done", "refused"]
    reason: str | None = Field(
        description="why it was refused: unknown_incident, not_waiting, unknown_caregiver,"
        " already_resolved, unknown_alarm, no_patient, ..."
    )
    sent_at: datetime | None
    decided_at: datetime | None


def _command_id(agency_id: str, key: str | None) -> str:
    return uuid.uuid4().hex if key is None else commands.command_id_for(agency_id, key)


async def _send(
    request: Request,
    response: Response,
    event: DispatcherCommand | AlarmCommand,
    asked: dict[str, Any],
) -> Accepted:
    """Keep what the command asks, then hand it to Kafka keyed by its incident or alarm."""
    log = CommandLog(request.app.state.db)
    kept = await log.sent(event.agency_id, event.command_id, event.actor, asked, event.at)
    if kept == "not_the_same":
        raise Refused(422, "idempotency_key_reused", "the key named another command")
    producer: Producer = request.app.state.producer
    value = orjson.dumps(event.model_dump(mode="json"))
    try:
        await producer.send_and_wait(keys.OFFER_ANSWERS, value, key=commands.key_of(event))
    except StorageError as exc:
        raise Refused(503, "unavailable", "try again", {"Retry-After": "5"}) from exc
    where = f"/v1/agencies/{event.agency_id}/commands/{event.command_id}"
    response.status_code = 202
    response.headers["Location"] = where
    return Accepted(command_id=event.command_id, command=event.command, outcome=where)


def _decided(make: Callable[[], T]) -> T:
    """The command the pure decision makes, or 403 with its reason."""
    try:
        return make()
    except RejectedInput as exc:
        raise Refused(403, exc.reason, exc.detail) from exc


async def _incident_command(
    request: Request,
    response: Response,
    claims: Claims,
    agency_id: str,
    incident_id: str,
    command: Literal["assign", "resolve"],
    key: str | None,
    caregiver_id: str | None = None,
    note: str | None = None,
) -> Accepted:
    may_dispatch(claims, agency_id)
    if await AgencyReads(request.app.state.db).incident(agency_id, incident_id) is None:
        raise Refused(404, "unknown_incident", incident_id)
    event = _decided(
        lambda: commands.incident_command(
            claims,
            command,
            incident_id,
            caregiver_id=caregiver_id,
            note=note,
            command_id=_command_id(agency_id, key),
            now=time.time(),
        )
    )
    asked: dict[str, Any] = {"command": command, "incident_id": incident_id}
    asked |= {"caregiver_id": caregiver_id} if command == "assign" else {"note": note}
    return await _send(request, response, event, asked)


@router.post(
    "/incidents/{incident_id}/assign",
    response_model=Accepted,
    status_code=202,
    summary="hand an incident to a caregiver by hand",
    responses=ACCEPTED,
)
async def assign_incident(
    request: Request,
    response: Response,
    claims: Caller,
    agency_id: AgencyId,
    incident_id: IncidentId,
    body: AssignIn,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    return await _incident_command(
        request,
        response,
        claims,
        agency_id,
        incident_id,
        "assign",
        idempotency_key,
        caregiver_id=body.caregiver_id,
    )


@router.post(
    "/incidents/{incident_id}/resolve",
    response_model=Accepted,
    status_code=202,
    summary="close an incident (its pending offers are cancelled)",
    responses=ACCEPTED,
)
async def resolve_incident(
    request: Request,
    response: Response,
    claims: Caller,
    agency_id: AgencyId,
    incident_id: IncidentId,
    body: ResolveIn | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    note = None if body is None else body.note
    return await _incident_command(
        request, response, claims, agency_id, incident_id, "resolve", idempotency_key, note=note
    )


@router.post(
    "/alarms/{alarm_id}/{command}",
    response_model=Accepted,
    status_code=202,
    summary="acknowledge, clear, clear as a false alarm, or open an incident from an alarm",
    responses=ACCEPTED,
)
async def alarm_command(
    request: Request,
    response: Response,
    claims: Caller,
    agency_id: AgencyId,
    alarm_id: AlarmId,
    command: Annotated[AlarmCommandKind, Path(description="what to do with it")],
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    may_dispatch(claims, agency_id)
    found = await AlarmStore(request.app.state.db).get(alarm_id)
    if found is None or found.agency_id != agency_id:
        raise Refused(404, "unknown_alarm", alarm_id)
    event = _decided(
        lambda: commands.alarm_command(
            claims,
            command,
            alarm_id,
            command_id=_command_id(agency_id, idempotency_key),
            now=time.time(),
        )
    )
    asked = {"command": command, "alarm_id": alarm_id}
    return await _send(request, response, event, asked)


@router.get(
    "/commands/{command_id}",
    response_model=CommandOutcome,
    summary="what became of a command",
    responses={404: {"description": "no command of the agency with this id"}},
)
async def command_outcome(
    request: Request, claims: Caller, agency_id: AgencyId, command_id: CommandId
) -> CommandOutcome:
    may_manage(claims, agency_id)
    found = await CommandLog(request.app.state.db).state(agency_id, command_id)
    if found is None:
        raise Refused(404, "unknown_command", command_id)
    return CommandOutcome(
        command_id=command_id,
        command=found.asked.get("command"),
        incident_id=found.asked.get("incident_id"),
        alarm_id=found.asked.get("alarm_id"),
        outcome=found.outcome or "pending",
        reason=found.reason,
        sent_at=None if found.sent_at is None else iso(found.sent_at),
        decided_at=None if found.decided_at is None else iso(found.decided_at),
    )
