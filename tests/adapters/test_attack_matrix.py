"""The attack matrix of the WebSocket surface, on a real gateway, Redis and Kafka: every role
(a caregiver, a family member, a dispatcher and an admin of agency A, a dispatcher of agency B,
nobody) sends every kind of frame a client may send. What its role may not send is refused at
the gateway with its reason and counted, and reaches no topic (no leak); what it may send is
acknowledged and forwarded stamped with its own identity and agency, whatever the frame claims.
Someone with no genuine token is refused before any frame is read (4401).

What the worker then refuses (an incident or an alarm of another agency, a caregiver not on a
visit) is shown where the worker decides: ``tests/adapters/test_dispatch_rules.py`` and
``tests/adapters/test_medication.py``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from websockets.asyncio.client import connect

from kernel import tokens
from kernel.contracts import Role
from kernel.settings import Settings
from tests.adapters.gateway_clients import TIMEOUT_S, client, close_code, recv, send
from tests.adapters.role_permissions import MAY
from ws_gateway.server import Gateway

pytestmark = pytest.mark.servers

A, B = "agency-a", "agency-b"
ROLES: dict[str, tuple[Role, str, list[str]]] = {
    "caregiver of A": ("caregiver", A, []),
    "family of A": ("family", A, ["p-a"]),
    "dispatcher of A": ("dispatcher", A, []),
    "admin of A": ("admin", A, []),  # watches the agency's console; commands nothing
    "dispatcher of B": ("dispatcher", B, []),
}
FRAMES: dict[str, dict[str, Any]] = {
    "accept": {"type": "accept", "offer_id": "offer-x"},
    "decline": {"type": "decline", "offer_id": "offer-x", "reason": "driving"},
    "assign": {"type": "assign", "incident_id": "inc-a", "caregiver_id": "cg-a"},
    "resolve": {"type": "resolve", "incident_id": "inc-a"},
    "acknowledge": {"type": "acknowledge", "alarm_id": "alarm-a"},
    "clear": {"type": "clear", "alarm_id": "alarm-a"},
    "false_alarm": {"type": "false_alarm", "alarm_id": "alarm-a"},
    "open_incident": {"type": "open_incident", "alarm_id": "alarm-a"},
    "administration": {
        "type": "administration",
        "record_id": "rec-x",
        "patient_id": "p-a",
        "dose_key": "morning",
        "action": "administered",
    },
    "resume": {"type": "resume", "last_seq": 0},
    "ping": {"type": "ping"},
}
REFUSED_AS = {"accept": "unknown_offer", "decline": "unknown_offer"}
CASES = [(who, kind) for who in ROLES for kind in FRAMES]


@pytest.fixture(scope="module")
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    async with Gateway(settings.model_copy(update={"gateway_port": 0})) as gw:
        yield gw


def subject_of(who: str, run: str) -> str:
    return f"{who.replace(' ', '-')}-{run}"


def token_of(settings: Settings, who: str, run: str) -> str:
    role, agency, patients = ROLES[who]
    ring = tokens.keyring_of(settings)
    return tokens.mint(ring, role, subject_of(who, run), agency, 600.0, time.time(), patients)


def expected(who: str, kind: str) -> str:
    """What the gateway answers: ``ack`` (forwarded), ``pong``, ``hello`` replayed for a
    resume (nothing to replay: no frame), or the reason it refuses."""
    role = ROLES[who][0]
    if kind not in MAY[role]:
        return "error:forbidden"
    if kind in REFUSED_AS:
        return f"error:{REFUSED_AS[kind]}"
    return {"ping": "pong", "resume": "nothing"}.get(kind, "ack")


async def answer_to(ws: Any, frame: dict[str, Any]) -> str:
    """What the gateway says to one frame: a ping after it tells a silent answer apart."""
    await send(ws, frame)
    await send(ws, {"type": "ping"})
    first = await recv(ws)
    if first["type"] == "pong":
        return "nothing" if frame["type"] != "ping" else "pong"
    await recv(ws)  # the pong of the ping behind it
    if first["type"] == "error":
        return f"error:{first['reason']}"
    return str(first["type"])


async def forwarded_by(settings: Settings, subjects: set[str]) -> list[dict[str, Any]]:
    """Everything on the offer-answers topic sent in the name of ``subjects``."""
    consumer = AIOKafkaConsumer(
        settings.keys.topic("offer-answers"),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=int(TIMEOUT_S * 1000))
        while more := await consumer.getmany(timeout_ms=500):
            batches.update(more)
    finally:
        await consumer.stop()
    values = [orjson.loads(r.value) for records in batches.values() for r in records]
    named = ("caregiver_id", "dispatcher_id")
    return [v for v in values if any(v.get(k) in subjects for k in named)]


async def test_every_role_against_every_frame(gateway: Gateway, settings: Settings) -> None:
    run = uuid.uuid4().hex[:6]
    before = gateway.counters.rejected.copy()
    outcomes: dict[tuple[str, str], str] = {}
    for who in ROLES:
        async with client(gateway, token=token_of(settings, who, run)) as ws:
            assert (await recv(ws))["type"] == "hello"
            for kind, frame in FRAMES.items():
                outcomes[(who, kind)] = await answer_to(ws, frame)
    assert outcomes == {case: expected(*case) for case in CASES}

    refused = [case for case in CASES if expected(*case).startswith("error:")]
    counted = gateway.counters.rejected - before
    assert sum(counted.values()) == len(refused)

    sent = await forwarded_by(settings, {subject_of(who, run) for who in ROLES})
    allowed = [c for c in CASES if expected(*c) == "ack"]
    assert len(sent) == len(allowed)  # no refused frame leaked to the workers
    for value in sent:
        who = next(w for w in ROLES if subject_of(w, run) in value.values())
        assert value["agency_id"] == ROLES[who][1]  # its own agency, whatever it claimed


@pytest.mark.parametrize("kind", list(FRAMES))
async def test_nobody_without_a_genuine_token_gets_a_frame_read(
    gateway: Gateway, settings: Settings, kind: str
) -> None:
    before = gateway.counters.rejected["unauthorised"]
    url = f"ws://127.0.0.1:{gateway.port}/ws"
    async with connect(url, open_timeout=TIMEOUT_S) as ws:
        await send(ws, FRAMES[kind])  # instead of an auth frame
        refused = await recv(ws)
        assert refused["reason"] == "unauthorised"
        assert await close_code(ws) == 4401
    assert gateway.counters.rejected["unauthorised"] == before + 1


@pytest.mark.parametrize(
    "forged",
    [
        "expired",
        "signed with a retired key",
        "signed with an unknown key",
        "for another audience",
    ],
)
async def test_tokens_that_are_not_good_are_refused_at_the_door(
    settings: Settings, forged: str
) -> None:
    now = time.time()
    ring = tokens.keyring_of(settings)
    current = ring.signer(now)
    claims = tokens.Claims(role="dispatcher", sub="d-forged", agency=A, exp=now + 600, iat=now)
    if forged == "expired":
        token = tokens.issue(claims.model_copy(update={"exp": now - 1}), ring, now)
    elif forged == "signed with a retired key":  # after its retirement: a leaked key minting
        old = "old-secret-old-secret-old-secret-0"
        ring = tokens.Keyring((current, tokens.TokenKey("old", old, retired_at=now - 60)))
        token = tokens.issue(claims, tokens.Keyring((tokens.TokenKey("old", old),)), now)
    elif forged == "signed with an unknown key":
        stranger = tokens.Keyring((tokens.TokenKey("zz", "z" * 40),))
        token = tokens.issue(claims, stranger, now)
    else:
        token = tokens.issue(claims.model_copy(update={"aud": "another-service"}), ring, now)
    keys = ",".join(
        f"{k.kid}:{k.secret}" + (f":{k.retired_at}" if k.retired_at else "") for k in ring.keys
    )
    async with Gateway(settings.model_copy(update={"gateway_port": 0, "token_keys": keys})) as gw:
        async with client(gw, token=token) as ws:
            refused = await recv(ws)
            assert refused["reason"] == "unauthorised"
            assert await close_code(ws) == 4401
        assert gw.counters.rejected["unauthorised"] == 1
