"""Who is calling: the bearer of an access token (``kernel.tokens``, the gateway's), checked
for its signature, audience, expiry and revocation; and what each role may do in an agency.

- an agency admin: the agency's record and its people and devices (caregivers, patients,
  devices, phones, their broker credentials, caregivers' certificates), and whatever a
  dispatcher reads and plans;
- a dispatcher: reads everything of her own agency, plans its roster (visits, shifts, fences),
  and alone sends dispatchers' commands (assign, resolve, an alarm's hand);
- a caregiver: her own record, certificates, shifts, visits and track;
- a family member: her relative's doses of a day (her page reads the gateway for the rest).

A missing or bad token is 401 (with ``WWW-Authenticate: Bearer``); a genuine one asking for
what its role or agency may not is 403.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from adapters.storage.revocations import Revocations
from api.problems import Refused
from kernel import tokens
from kernel.errors import AuthError
from kernel.tokens import Claims, Keyring

_BEARER = HTTPBearer(auto_error=False, description="an access token (careknot token)")
UNAUTHORISED = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, slots=True)
class Trust:
    ring: Keyring
    revocations: Revocations


async def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> Claims:
    trust: Trust = request.app.state.trust
    if credentials is None:
        raise Refused(401, "unauthorised", "no bearer token", UNAUTHORISED)
    try:
        claims = tokens.verify(credentials.credentials, trust.ring, time.time())
        await trust.revocations.still_good(claims, time.time())
    except AuthError as exc:
        raise Refused(401, "unauthorised", str(exc), UNAUTHORISED) from exc
    return claims


Caller = Annotated[Claims, Depends(caller)]


def _of_agency(claims: Claims, agency_id: str) -> None:
    if claims.agency != agency_id:
        raise Refused(403, "other_agency", f"a token of {claims.agency}")


def may_manage(claims: Claims, agency_id: str) -> None:
    """A dispatcher or an admin of the agency (reads, the roster), or 403."""
    _of_agency(claims, agency_id)
    if claims.role not in ("dispatcher", "admin"):
        raise Refused(403, "forbidden", f"a {claims.role} cannot manage the agency")


def may_administer(claims: Claims, agency_id: str) -> None:
    """An admin of the agency (its record, people and devices), or 403."""
    _of_agency(claims, agency_id)
    if claims.role != "admin":
        raise Refused(403, "forbidden", f"a {claims.role} cannot administer the agency")


def may_dispatch(claims: Claims, agency_id: str) -> None:
    """A dispatcher of the agency (dispatchers' commands), or 403."""
    _of_agency(claims, agency_id)
    if claims.role != "dispatcher":
        raise Refused(403, "forbidden", f"a {claims.role} cannot dispatch")


def may_read_caregiver(claims: Claims, agency_id: str, caregiver_id: str) -> None:
    """A dispatcher or an admin of the agency, or the caregiver herself, or 403."""
    if claims.role == "caregiver" and (claims.agency, claims.sub) == (agency_id, caregiver_id):
        return
    may_manage(claims, agency_id)


def may_read_relative(claims: Claims, agency_id: str, patient_id: str) -> None:
    """A dispatcher or an admin of the agency, or a family member of the patient, or 403."""
    if claims.role == "family" and claims.agency == agency_id and patient_id in claims.patients:
        return
    may_manage(claims, agency_id)
