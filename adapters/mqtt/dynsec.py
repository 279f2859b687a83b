"""Who may publish what at the broker: Mosquitto's dynamic security plugin, driven over its MQTT
control API (``$CONTROL/dynamic-security/v1``, JSON commands answered on ``.../response``).

Every device and caregiver phone is a client of its own, its username its id, with a role of its
own whose ACLs name its own topics literally (Mosquitto 2.0's plugin does not expand ``%u`` in
ACLs): it may publish under ``ck/{agency}/dev/{device}/`` (a phone: ``ck/{agency}/cg/{id}/``)
and nothing else, subscribe to and receive only its own commands (``.../cmd/#``), and not
publish those. An OwnTracks user is a client named by her OwnTracks user name, which the app
puts in its topics: she may publish under ``owntracks/{user}/`` (her phones' fixes, events and
cards) and read only her phones' commands (``owntracks/{user}/+/cmd``); which of her phones is
whose caregiver is ingest's to tell. A username is one publisher's alone: a client known with
another's role is never given a password for this one (:class:`UsernameTaken`).

The services share one client (:data:`SERVICE_ROLE`): they subscribe to and
receive every ``ck/`` and ``owntracks/`` topic (shared subscriptions included) and may publish
under ``ck/`` (test drivers and benchmarks publish as devices do; the services' own power, to
write Kafka, is larger). Everything else is denied by default (:data:`DEFAULT_DENY`).

:func:`config_file` writes the plugin's first configuration (an admin client, the services'
client, default deny) before Mosquitto starts; :class:`DynSec` changes it while it runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import aiomqtt

from adapters.mqtt.access import BrokerAccess
from kernel.errors import BrokerUnavailable, CareKnotError

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
ADMIN_USER = "careknot-admin"
ADMIN_ROLE = "careknot-admin"
SERVICE_USER = "careknot-service"
SERVICE_ROLE = "careknot-service"
PBKDF2_ITERATIONS = 101
"""What ``mosquitto_ctrl`` writes; the plugin reads the count from each client's entry."""
COMMANDS_AT_ONCE = 10
"""Commands sent in one control message (the plugin answers them in one response). Each
command that changes something makes the plugin write its whole configuration again (about a
kilobyte a client: 2.4 MB for the demo city's 2,300 devices and phones, some 25 ms a command
then), and Mosquitto routes nothing meanwhile: ten at a time, the publishers wait a quarter of a
second at most between two messages."""
ANSWER_TIMEOUT_S = 30.0
CLIENT_NOT_FOUND = "Client not found"
"""The plugin's answer to ``getClient`` for a username it does not know."""

DEFAULT_DENY = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}
"""The plugin's default for what no ACL speaks of: nothing may be published, received or
subscribed to; unsubscribing gives nothing away."""

Kind = Literal["dev", "cg", "ot"]
"""A device, a caregiver's phone (the project's own app), an OwnTracks user."""


class DynSecError(CareKnotError):
    """The broker refused a dynamic-security command."""


class UsernameTaken(DynSecError):
    """A client of that name is another publisher's (another kind, agency or id): giving it a
    password would hand over that publisher's topics."""


def _acl(acltype: str, topic: str, allow: bool = True, priority: int = 0) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": allow, "priority": priority}


def service_acls() -> list[dict[str, Any]]:
    """The services' role: every ``ck/`` and ``owntracks/`` topic to read (shared subscriptions
    too: the plugin checks a subscription's whole filter, ``$share/...`` and all) and ``ck/``
    to publish."""
    acls = []
    for root in ("ck/#", "owntracks/#"):
        acls += [
            _acl("subscribePattern", root),
            _acl("subscribePattern", f"$share/+/{root}"),
            _acl("publishClientReceive", root),
        ]
    return [*acls, _acl("publishClientSend", "ck/#")]


def admin_acls() -> list[dict[str, Any]]:
    """The admin's role: the control API, and reading everything (as ``mosquitto_ctrl dynsec
    init`` makes it)."""
    control = "$CONTROL/dynamic-security/#"
    return [
        _acl("publishClientSend", control),
        _acl("publishClientReceive", control),
        _acl("subscribePattern", control),
        _acl("publishClientReceive", "#"),
        _acl("subscribePattern", "#"),
        _acl("unsubscribePattern", "#"),
    ]


def publisher_prefix(agency: str, kind: Kind, publisher: str) -> str:
    """``ck/{agency}/dev/{device}``, ``ck/{agency}/cg/{caregiver}`` or ``owntracks/{user}``:
    the publisher's topics."""
    for part in (agency, publisher):
        if not part or any(c in part for c in "/+#\0"):
            raise ValueError(f"not a topic level: {part!r}")
    return f"owntracks/{publisher}" if kind == "ot" else f"ck/{agency}/{kind}/{publisher}"


def publisher_acls(agency: str, kind: Kind, publisher: str) -> list[dict[str, Any]]:
    """Its own topics to publish, not its commands; its own commands to read."""
    own = publisher_prefix(agency, kind, publisher)
    commands = [f"{own}/+/cmd", f"{own}/+/cmd/#"] if kind == "ot" else [f"{own}/cmd/#"]
    return [
        *(_acl("publishClientSend", c, allow=False, priority=1) for c in commands),
        _acl("publishClientSend", f"{own}/#"),
        *(
            _acl(acltype, c)
            for c in commands
            for acltype in ("subscribeLiteral", "subscribePattern", "publishClientReceive")
        ),
    ]


def role_name(agency: str, kind: Kind, publisher: str) -> str:
    return f"ck-{kind}-{agency}-{publisher}"


def hashed(password: str, iterations: int = PBKDF2_ITERATIONS) -> dict[str, Any]:
    """A client entry's ``password``, ``salt`` and ``iterations`` as the plugin keeps them
    (PBKDF2-SHA512, 64 bytes, base64)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": iterations,
    }


def new_password() -> str:
    return secrets.token_urlsafe(24)


def write_secret(path: Path, secret: str) -> None:
    """``secret`` in a file only its owner may read (made so before a byte is written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret)
    os.chmod(path, 0o600)


def config_file(path: Path, admin_password: str, service_password: str) -> None:
    """The plugin's first configuration: the admin client, the services' client, default deny;
    readable by its owner alone (it holds the password hashes)."""
    config = {
        "defaultACLAccess": DEFAULT_DENY,
        "clients": [
            {"username": ADMIN_USER, **hashed(admin_password), "roles": [{"rolename": ADMIN_ROLE}]},
            {
                "username": SERVICE_USER,
                **hashed(service_password),
                "roles": [{"rolename": SERVICE_ROLE}],
            },
        ],
        "roles": [
            {"rolename": ADMIN_ROLE, "acls": admin_acls()},
            {"rolename": SERVICE_ROLE, "acls": service_acls()},
        ],
        "groups": [],
    }
    write_secret(path, json.dumps(config, indent=1))


@dataclass(frozen=True, slots=True)
class Publisher:
    """A device or a caregiver's phone to give credentials: its username is its id."""

    agency: str
    kind: Kind
    id: str
    password: str


def publisher_commands(p: Publisher) -> list[dict[str, Any]]:
    """Its role (its own topics, literally) and its client."""
    role = role_name(p.agency, p.kind, p.id)
    return [
        {"command": "createRole", "rolename": role, "acls": publisher_acls(p.agency, p.kind, p.id)},
        {
            "command": "createClient",
            "username": p.id,
            "password": p.password,
            "roles": [{"rolename": role}],
        },
    ]


class DynSec:
    """The control API, as the admin client: ``async with DynSec(access) as d: await
    d.provision(...)``. :class:`BrokerUnavailable` when the broker cannot be reached;
    :class:`DynSecError` when it refuses a command."""

    def __init__(self, access: BrokerAccess) -> None:
        self._access = access
        self._client = aiomqtt.Client(
            access.host,
            access.port,
            identifier=f"careknot-dynsec-{uuid.uuid4().hex[:8]}",
            protocol=aiomqtt.ProtocolVersion.V5,
            **access.client_options(),
        )
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> DynSec:
        try:
            await self._client.__aenter__()
            await self._client.subscribe(RESPONSE_TOPIC, qos=1)
        except aiomqtt.MqttError as exc:
            raise BrokerUnavailable(f"mqtt: dynsec: {self._access.where}: {exc}") from exc
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(et, e, tb)

    async def _read(self) -> None:
        try:
            async for message in self._client.messages:
                if isinstance(message.payload, bytes | bytearray):
                    self._answers.put_nowait(json.loads(message.payload))
        except aiomqtt.MqttError:
            return

    async def send(
        self, commands: Sequence[dict[str, Any]], *, tolerate: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """Run ``commands`` in order, :data:`COMMANDS_AT_ONCE` a message; their answers. An
        answer with an ``error`` raises :class:`DynSecError` unless the command is one of
        ``tolerate`` (its answer is returned as it is)."""
        allowed = set(tolerate)
        answers: list[dict[str, Any]] = []
        async with self._lock:
            for i in range(0, len(commands), COMMANDS_AT_ONCE):
                chunk = list(commands[i : i + COMMANDS_AT_ONCE])
                body = json.dumps({"commands": chunk})
                try:
                    await self._client.publish(CONTROL_TOPIC, body, qos=1)
                    answer = await asyncio.wait_for(self._answers.get(), ANSWER_TIMEOUT_S)
                except aiomqtt.MqttError as exc:
                    raise BrokerUnavailable(f"mqtt: dynsec: {exc}") from exc
                except TimeoutError as exc:
                    raise BrokerUnavailable("mqtt: dynsec: no answer to a command") from exc
                got = answer.get("responses", [])
                if len(got) != len(chunk):
                    raise DynSecError(f"{len(chunk)} commands, {len(got)} answers")
                for asked, said in zip(chunk, got, strict=True):
                    if said.get("error") and asked["command"] not in allowed:
                        raise DynSecError(f"{asked['command']}: {said['error']}")
                answers += got
        return answers

    async def default_deny(self) -> None:
        """Deny by default whatever no ACL speaks of (:data:`DEFAULT_DENY`)."""
        acls = [{"acltype": k, "allow": v} for k, v in DEFAULT_DENY.items()]
        await self.send([{"command": "setDefaultACLAccess", "acls": acls}])

    async def clients(self) -> dict[str, frozenset[str]]:
        """Every client the broker knows, by username: the names of its roles."""
        [answer] = await self.send([{"command": "listClients", "verbose": True, "count": -1}])
        return {
            c["username"]: frozenset(r["rolename"] for r in c.get("roles", []))
            for c in answer.get("data", {}).get("clients", [])
        }

    async def roles_of(self, username: str) -> frozenset[str] | None:
        """The names of the roles of the broker's client ``username`` (None: it knows none of
        that name), asked of that client alone (``getClient``)."""
        command = {"command": "getClient", "username": username}
        [answer] = await self.send([command], tolerate=("getClient",))
        if answer.get("error") == CLIENT_NOT_FOUND:
            return None
        if answer.get("error"):
            raise DynSecError(f"getClient: {answer['error']}")
        client = answer.get("data", {}).get("client", {})
        return frozenset(r["rolename"] for r in client.get("roles", []))

    async def provision(self, publishers: Iterable[Publisher]) -> int:
        """Give each publisher not known yet its client and role (those known keep their
        password). How many were new. :class:`UsernameTaken`, and nothing changed, when a
        username is known with another's role.

        Each command makes the plugin write its whole configuration again, so a known
        publisher costs nothing, and a new one two commands; every client is listed once,
        for a city's thousands at a time."""
        known = await self.clients()
        commands: list[dict[str, Any]] = []
        new = 0
        for p in publishers:
            roles = known.get(p.id)
            if roles is None:
                commands += publisher_commands(p)
                new += 1
            elif role_name(p.agency, p.kind, p.id) not in roles:
                raise UsernameTaken(f"the broker's client {p.id} is another publisher's")
        await self.send(commands)
        return new

    async def give_password(self, p: Publisher) -> bool:
        """One publisher's password set to ``p.password`` (the old one refused from then on),
        its client and role made if it has none; whether they were new. Only its own client is
        asked for (``getClient``); :class:`UsernameTaken`, and nothing changed, when a client of
        that name holds another's role."""
        roles = await self.roles_of(p.id)
        if roles is None:
            await self.send(publisher_commands(p))
            return True
        if role_name(p.agency, p.kind, p.id) not in roles:
            raise UsernameTaken(f"the broker's client {p.id} is another publisher's")
        await self.send(
            [{"command": "setClientPassword", "username": p.id, "password": p.password}]
        )
        return False

    async def withdraw(self, agency: str, kind: Kind, publisher: str) -> None:
        """The publisher's client and role deleted: it can no longer connect. A client of that
        name with another's role is left alone (:class:`UsernameTaken`)."""
        role = role_name(agency, kind, publisher)
        roles = await self.roles_of(publisher)
        if roles is not None and role not in roles:
            raise UsernameTaken(f"the broker's client {publisher} is another publisher's")
        await self.send(
            [
                {"command": "deleteClient", "username": publisher},
                {"command": "deleteRole", "rolename": role},
            ],
            tolerate=("deleteClient", "deleteRole"),
        )
