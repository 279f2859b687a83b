"""The demo city schedules its day's visits through the HTTP API, as an agency's own roster
system would: a dispatcher's token minted with the system's keys, the homes' fences that need
one (``PUT .../patients/{id}/fence``) and the day's visits from now as one CSV import (``POST
.../visits:import``: all or nothing, keyed by visit id, so a city started again the same day
schedules nothing twice). The plan is ``simulators.visit_plan``'s.

It waits for the API to answer first (``careknot up`` starts it beside the city), up to
:data:`API_WAIT_S`, logging why if it never does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from kernel import tokens
from kernel.settings import Settings
from simulators.visit_plan import PlannedVisit, roster_csv

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

API_WAIT_S = 90.0
POLL_S = 1.0
REQUEST_TIMEOUT_S = 30.0
SUBJECT = "city-roster"
"""The dispatcher the city's roster is written as (its token's subject)."""
ANY_HOST = ("", "0.0.0.0", "::")


class SchedulingFailed(Exception):
    """The API did not answer in time, or refused what the city asked."""


def api_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.api_host in ANY_HOST else settings.api_host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}"


def dispatcher_token(settings: Settings, agency: str, now: float) -> str:
    ring = tokens.keyring_of(settings)
    return tokens.mint(ring, "dispatcher", SUBJECT, agency, settings.token_ttl_s, now)


async def schedule(
    settings: Settings,
    agency: str,
    visits: Sequence[PlannedVisit],
    fences: Mapping[str, float],
    *,
    wait_s: float = API_WAIT_S,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, int]:
    """Give ``fences`` (radius by patient) and import ``visits``; the import's counts
    (``created``, ``changed``, ``unchanged``). :class:`SchedulingFailed` if the API never
    answers within ``wait_s`` or refuses."""
    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not each of the city's requests
    headers = {"Authorization": f"Bearer {dispatcher_token(settings, agency, time.time())}"}
    async with httpx.AsyncClient(
        base_url=api_url(settings),
        headers=headers,
        timeout=REQUEST_TIMEOUT_S,
        transport=transport,
        trust_env=False,
    ) as client:
        await _answering(client, agency, wait_s)
        for patient_id, radius in sorted(fences.items()):
            await _fence(client, agency, patient_id, radius)
        if not visits:
            return {"created": 0, "changed": 0, "unchanged": 0}
        answer = await client.post(
            f"/v1/agencies/{agency}/visits:import",
            content=roster_csv(visits),
            headers={"Content-Type": "text/csv"},
        )
        if answer.status_code != 200:
            raise SchedulingFailed(f"the import was refused: {answer.status_code} {answer.text}")
        counts: dict[str, int] = answer.json()
        return counts


async def _answering(client: httpx.AsyncClient, agency: str, wait_s: float) -> None:
    """Until the API answers a read of the agency's visits (an error or a refusal, the reason
    kept), or ``wait_s`` passes."""
    import httpx

    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    reason = "no answer"
    while True:
        try:
            answer = await client.get(f"/v1/agencies/{agency}/visits", params={"limit": 1})
            if answer.status_code == 200:
                return
            reason = f"{answer.status_code} {answer.text[:200]}"
            if answer.status_code in (401, 403):  # no waiting will mend a token refused
                raise SchedulingFailed(f"the API refused the city's token: {reason}")
        except httpx.HTTPError as exc:
            reason = repr(exc)
        if loop.time() >= deadline:
            raise SchedulingFailed(f"the API did not answer within {wait_s:.0f} s: {reason}")
        await asyncio.sleep(POLL_S)


async def _fence(client: httpx.AsyncClient, agency: str, patient_id: str, radius: float) -> None:
    """Her home's fence a circle of ``radius`` m, unless it is one already."""
    path = f"/v1/agencies/{agency}/patients/{patient_id}/fence"
    current = await client.get(path)
    if current.status_code != 200:
        raise SchedulingFailed(f"{patient_id}'s fence: {current.status_code} {current.text}")
    shown = current.json()
    if shown.get("own") and shown.get("radius_m") == radius:
        return
    given = {"If-Match": current.headers.get("ETag", "")}
    put = await client.put(path, json={"radius_m": radius}, headers=given)
    if put.status_code not in (200, 201):
        raise SchedulingFailed(f"{patient_id}'s fence: {put.status_code} {put.text}")
