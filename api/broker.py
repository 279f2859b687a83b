"""Broker credentials of a device's, a caregiver's phone's or an OwnTracks user's own, where the
system runs its broker (``careknot up``'s Mosquitto, dynamic security): a client named by its id,
a role that lets it publish only under its own topics and read only its own commands, and a
password shown once; withdrawn when it is decommissioned. Where the broker is another's,
credentials are provisioned and withdrawn there (None here)."""

from __future__ import annotations

import secrets

from pydantic import BaseModel, Field

from adapters.mqtt.access import admin_access
from adapters.mqtt.dynsec import DynSec, Kind, Publisher, UsernameTaken
from api.problems import Refused
from kernel.errors import BrokerUnavailable
from kernel.settings import Settings

PASSWORD_BYTES = 24


class Credentials(BaseModel):
    username: str
    password: str = Field(description="shown once: keep it on the device or the phone")


async def credentials_for(
    settings: Settings, agency_id: str, kind: Kind, publisher: str
) -> Credentials | None:
    """Its client made, or its password set anew (the old one refused from then on); 409
    ``username_taken`` when the broker's client of that name is another publisher's (a device
    of another agency named as this caregiver is: its password is never handed over)."""
    admin = admin_access(settings)
    if admin is None:
        return None
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    try:
        async with DynSec(admin) as control:
            await control.give_password(Publisher(agency_id, kind, publisher, password))
    except UsernameTaken as exc:
        raise Refused(
            409, "username_taken", f"the broker's client {publisher} is another's"
        ) from exc
    except BrokerUnavailable as exc:
        raise Refused(503, "broker_unavailable", "try again", {"Retry-After": "5"}) from exc
    return Credentials(username=publisher, password=password)


async def withdraw(settings: Settings, agency_id: str, kind: Kind, publisher: str) -> None:
    """Its client and role deleted at the broker the system runs (nothing elsewhere); a client
    of that name that is another publisher's is left alone."""
    admin = admin_access(settings)
    if admin is None:
        return
    try:
        async with DynSec(admin) as control:
            await control.withdraw(agency_id, kind, publisher)
    except UsernameTaken:
        return  # another's client: nothing of this publisher's to withdraw
    except BrokerUnavailable as exc:
        raise Refused(503, "broker_unavailable", "try again", {"Retry-After": "5"}) from exc
