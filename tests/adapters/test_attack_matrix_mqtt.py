"""The attack matrix of the MQTT surface, on a Mosquitto of the module's own started as
``careknot up`` starts one (anonymous refused, dynamic security, default deny): every publisher
(a fall detector of agency A, a caregiver's phone of A, an OwnTracks user of A, a device of
agency B) publishes on every topic a device or a phone has, its own and everyone else's, over
MQTT 5, and subscribes to every stream it might want to read. What is its own is acknowledged
(reason 0, granted); everything else is refused by the broker (reason 135, not authorised) and
none of it is delivered to the admin watching every topic: no leak.

Who cannot connect at all (anonymous, unknown, wrong password) is in
``tests/adapters/test_broker_identity.py``.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest

from adapters.mqtt.access import access_of, admin_access
from adapters.mqtt.dynsec import DynSec, Kind, Publisher, publisher_prefix
from careknot.servers.embedded import Started
from kernel.settings import Settings
from tests.adapters.own_broker import Reasoned, as_device, broker

pytestmark = pytest.mark.servers

__all__ = ["broker"]  # the module's own Mosquitto (tests.adapters.own_broker)

TAG = uuid.uuid4().hex[:6]
A, B = f"mx-{TAG}-a", f"mx-{TAG}-b"
WHO: dict[str, Publisher] = {
    "device of A": Publisher(A, "dev", f"mx-{TAG}-fd", f"p-{uuid.uuid4().hex}"),
    "phone of A": Publisher(A, "cg", f"mx-{TAG}-cg", f"p-{uuid.uuid4().hex}"),
    "OwnTracks user of A": Publisher(A, "ot", f"mx-{TAG}-ot", f"p-{uuid.uuid4().hex}"),
    "device of B": Publisher(B, "dev", f"mx-{TAG}-fdb", f"p-{uuid.uuid4().hex}"),
}
SUFFIXES: dict[Kind, tuple[str, ...]] = {
    "dev": ("evt", "tel", "status"),
    "cg": ("loc", "status"),
    "ot": ("phone", "phone/event", "phone/info"),  # owntracks/{user}/{device}[/...]
}
NOT_AUTHORISED = 135
WITHIN_S = 30.0


def commands(p: Publisher) -> str:
    """Its own commands' filter."""
    own = publisher_prefix(p.agency, p.kind, p.id)
    return f"{own}/+/cmd" if p.kind == "ot" else f"{own}/cmd/#"


def command(p: Publisher) -> str:
    """One command to it."""
    own = publisher_prefix(p.agency, p.kind, p.id)
    return f"{own}/phone/cmd" if p.kind == "ot" else f"{own}/cmd/ping"


def topics() -> list[tuple[str, str]]:
    """Every topic any of them has: (whose, topic)."""
    return [
        (who, f"{publisher_prefix(p.agency, p.kind, p.id)}/{suffix}")
        for who, p in WHO.items()
        for suffix in SUFFIXES[p.kind]
    ] + [(who, command(p)) for who, p in WHO.items()]


def may_publish(who: str, whose: str, topic: str) -> bool:
    """Its own topics, not its commands (the system sends those)."""
    return who == whose and topic != command(WHO[whose])


def streams(p: Publisher) -> list[tuple[str, bool]]:
    """What it might subscribe to, and whether it may."""
    own = publisher_prefix(p.agency, p.kind, p.id)
    return [
        (commands(p), True),
        (f"{own}/#", False),  # its own evt/loc are the system's to read
        (f"ck/{p.agency}/#", False),
        ("owntracks/#", False),  # everyone's OwnTracks fixes, as the app asks by default
        *((commands(q), q is p) for q in WHO.values() if q is not p),
        ("#", False),
        ("$SYS/#", False),
        ("$CONTROL/dynamic-security/v1", False),
    ]


@pytest.fixture(scope="module")
async def secured(settings: Settings, broker: Started) -> Settings:
    own = settings.model_copy(update=broker.update)
    admin = admin_access(own)
    assert admin is not None
    async with DynSec(admin) as control:
        assert await control.provision(list(WHO.values())) == len(WHO)
    return own


async def test_every_publisher_on_every_topic(secured: Settings) -> None:
    admin = admin_access(secured)
    assert admin is not None
    cases = topics()
    outcomes: dict[tuple[str, str], int] = {}
    async with admin.client(identifier=f"watch-{TAG}") as watcher:
        await watcher.subscribe("ck/#", qos=1)
        await watcher.subscribe("owntracks/#", qos=1)
        for who, p in WHO.items():
            async with Reasoned(as_device(secured, p.id, p.password)) as client:
                for _, topic in cases:
                    body = orjson.dumps({"by": who, "topic": topic, "ts": time.time()})
                    await client.publish(topic, body, qos=1, timeout=WITHIN_S)
                # its last word, on a topic of its own: what it published before (a leak
                # among it) reaches the watcher first
                own = f"{publisher_prefix(p.agency, p.kind, p.id)}/{SUFFIXES[p.kind][0]}"
                await client.publish(own, orjson.dumps({"by": who, "end": True}), qos=1)
            assert [c.value for c in client.pubacks[len(cases) :]] == [0]  # its last word
            for (_, topic), code in zip(cases, client.pubacks[: len(cases)], strict=True):
                outcomes[(who, topic)] = code.value
        delivered, ended = [], set()
        async with asyncio.timeout(WITHIN_S):
            async for message in watcher.messages:
                said = orjson.loads(message.payload)
                if said.get("end"):
                    ended.add(said["by"])
                    if ended == set(WHO):
                        break
                    continue
                delivered.append((said["by"], message.topic.value))
    expected = {
        (who, topic): 0 if may_publish(who, whose, topic) else NOT_AUTHORISED
        for who in WHO
        for whose, topic in cases
    }
    assert outcomes == expected
    allowed = sorted(k for k, code in expected.items() if code == 0)
    assert sorted(delivered) == allowed  # every refused publish kept from every reader
    assert len(expected) == len(WHO) * len(cases) and len(allowed) == 11


@pytest.mark.parametrize("who", list(WHO))
async def test_every_subscriber_to_every_stream(secured: Settings, who: str) -> None:
    p = WHO[who]
    wanted = streams(p)
    async with Reasoned(as_device(secured, p.id, p.password)) as client:
        granted = [
            (await client.subscribe(topic, qos=1))[0].value  # type: ignore[union-attr]
            for topic, _ in wanted
        ]
    assert granted == [1 if may else NOT_AUTHORISED for _, may in wanted]


async def test_a_refused_subscriber_hears_nothing_of_another(secured: Settings) -> None:
    """Device B, refused A's commands, gets none of them when the system sends them."""
    b, a = WHO["device of B"], WHO["device of A"]
    commands = f"ck/{A}/dev/{a.id}/cmd/#"
    async with Reasoned(as_device(secured, b.id, b.password)) as snoop:
        await snoop.subscribe(commands, qos=1)
        await snoop.subscribe(f"ck/{B}/dev/{b.id}/cmd/#", qos=1)
        async with access_of(secured).client(identifier=f"sender-{TAG}") as system:
            await system.publish(f"ck/{A}/dev/{a.id}/cmd/reboot", b"{}", qos=1)
            await system.publish(f"ck/{B}/dev/{b.id}/cmd/reboot", b"{}", qos=1)
        async with asyncio.timeout(WITHIN_S):
            first = await anext(aiter(snoop.messages))
    assert first.topic.value == f"ck/{B}/dev/{b.id}/cmd/reboot"  # its own, never A's
