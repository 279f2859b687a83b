"""A dispatcher's commands about an incident, as carried on the offer-answers Kafka topic.

The gateway turns a dispatcher's ``assign`` or ``resolve`` frame into a
:class:`DispatcherCommand` (its agency and subject from the token) and produces it keyed by
incident, next to caregivers' answers, so one worker handles an incident's answers and
commands in order. The worker checks that the incident and the caregiver are the agency's.

(An internal Kafka event like :class:`kernel.contracts.OfferAnswer`; it belongs with it in
``careknot/contracts.py`` and lives here until that module's owner moves it.)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class DispatcherCommand(BaseModel):
    """``assign`` an incident to a caregiver by hand, or ``resolve`` it."""

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
