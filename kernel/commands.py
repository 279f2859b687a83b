"""A dispatcher's hand, whichever door it comes through (the gateway's frames, the HTTP API):
what it becomes on the offer-answers topic, stamped with her agency and id from her token, and
the key that puts it in order with the rest of its incident's or alarm's (one worker handles
them one at a time). Anyone but a dispatcher is refused ``forbidden``; whether the incident,
the alarm and the caregiver are her agency's is the worker's to check.

Pure: no I/O, no clock (``now`` is passed in).
"""

from __future__ import annotations

import uuid
from typing import Literal

from kernel.contracts import AlarmCommand, AlarmCommandKind, DispatcherCommand
from kernel.errors import RejectedInput
from kernel.tokens import Claims

FORBIDDEN = "forbidden"
IncidentCommandKind = Literal["assign", "resolve"]
_IDEMPOTENT = uuid.UUID("8a0c4f0e-52d1-4d7b-9d0e-6f1f7c3f2a11")


def incident_command(
    claims: Claims,
    command: IncidentCommandKind,
    incident_id: str,
    *,
    caregiver_id: str | None = None,
    note: str | None = None,
    command_id: str,
    now: float,
) -> DispatcherCommand:
    """Her ``assign`` (to ``caregiver_id``) or ``resolve`` (with ``note``) of an incident."""
    if claims.role != "dispatcher":
        raise RejectedInput(FORBIDDEN, f"a {claims.role} cannot {command}")
    return DispatcherCommand(
        command_id=command_id,
        command=command,
        incident_id=incident_id,
        agency_id=claims.agency,
        dispatcher_id=claims.sub,
        caregiver_id=caregiver_id if command == "assign" else None,
        note=note if command == "resolve" else None,
        at=now,
    )


def alarm_command(
    claims: Claims, command: AlarmCommandKind, alarm_id: str, *, command_id: str, now: float
) -> AlarmCommand:
    """Her ``acknowledge``, ``clear``, ``false_alarm`` or ``open_incident`` of an alarm."""
    if claims.role != "dispatcher":
        raise RejectedInput(FORBIDDEN, f"a {claims.role} cannot {command}")
    return AlarmCommand(
        command_id=command_id,
        command=command,
        alarm_id=alarm_id,
        agency_id=claims.agency,
        dispatcher_id=claims.sub,
        at=now,
    )


def key_of(command: DispatcherCommand | AlarmCommand) -> str:
    """Its key on the offer-answers topic: its incident's or its alarm's id."""
    return command.alarm_id if isinstance(command, AlarmCommand) else command.incident_id


def command_id_for(agency_id: str, idempotency_key: str) -> str:
    """The id of the command a client names with its own key: the same key of the same agency
    is the same command (a retry is one command), another agency's never collides with it."""
    return uuid.uuid5(_IDEMPOTENT, f"{agency_id}\n{idempotency_key}").hex
