"""Every Redis key and Kafka topic of a namespace, named once.

``ns`` is the namespace (``CAREKNOT_NAMESPACE``, ``ck`` by default): it prefixes Redis keys and
Kafka topics, and is the Postgres schema.

Redis:

==================================  =======  ================================================
key                                 type     holds
==================================  =======  ================================================
``{ns}:cg:{caregiver}``             hash     her latest accepted position and her status
``{ns}:street:{agency}:{cell}``     hash     caregiver → entry, H3 resolution 8
``{ns}:area:{agency}:{cell}``       hash     the same at resolution 6
``{ns}:shapes``                     hash     area cell → its shape (a search skips far cells)
``{ns}:live:seq``                   counter  the live index's last change
``{ns}:live:changes``               stream   the live index's recent changes
``{ns}:offer:{offer}``              hash     a pending offer (the gateways check answers)
``{ns}:out:{recipient}``            channel  messages to one WebSocket recipient
``{ns}:outbox:{recipient}``         stream   the same messages, kept for ``resume``
``{ns}:outpos:{recipient}``         hash     their last ``seq`` and its ``epoch``
``{ns}:announced:{id}``             string   a dispatch announcement was told
``{ns}:visits:trackers``            hash     caregiver → her fence tracker
``{ns}:visits:fences``              counter  bumped when a fence changes
``{ns}:health:worker:{role}``       string   a worker's heartbeat
``{ns}:incarnation``                string   set once: gone means Redis lost its data
``{ns}:geo:{agency}``               geo      ``careknot bench dispatch``'s comparison only
==================================  =======  ================================================

Kafka: ``{ns}.{name}`` for each name in :data:`TOPICS`; the workers' consumer groups
``{ns}-worker`` and ``{ns}-worker-{role}``.

Server-side scripts spell the live index's keys through the Lua functions of :data:`LUA`, made
from the same segments; tests/adapters/test_keys.py holds them to the same strings as
:class:`Keys`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CellLevel = Literal["street", "area"]

FIXES = "fixes"
PRESENCE = "presence"
DEVICE_EVENTS = "device-events"
TELEMETRY = "telemetry"
OFFER_ANSWERS = "offer-answers"
"""Caregivers' answers and dispatchers' commands, keyed by incident."""
DEADLETTER = "deadletter"
DEVICE_STATUS = "device-status"
"""Home devices' heartbeats, births and last wills, keyed by device."""
HOME_ACTIVITY = "home-activity"
"""Ambient sensors' events (motion, doors), keyed by device: a home's routine, the flood beside
the device events that act (falls, SOS calls, dispensers), which the dispatch worker alone reads."""
ACCESS_LOG = "access-log"
"""Who read what through the gateway (a connection to a recipient's messages), keyed by
recipient: kept in Postgres by the devices worker."""
TOPICS = (
    ACCESS_LOG,
    FIXES,
    PRESENCE,
    DEVICE_EVENTS,
    TELEMETRY,
    OFFER_ANSWERS,
    DEADLETTER,
    DEVICE_STATUS,
    HOME_ACTIVITY,
)

_CAREGIVER = "cg"
_SHAPES = "shapes"
_LIVE_SEQ = "live:seq"
_LIVE_CHANGES = "live:changes"

LUA = f"""
local function caregiver_key(ns, id) return ns .. ':{_CAREGIVER}:' .. id end
local function cell_key(ns, level, agency, cell)
  return ns .. ':' .. level .. ':' .. agency .. ':' .. cell
end
local function shapes_key(ns) return ns .. ':{_SHAPES}' end
local function live_seq_key(ns) return ns .. ':{_LIVE_SEQ}' end
local function live_changes_key(ns) return ns .. ':{_LIVE_CHANGES}' end
"""
"""Lua functions naming the live index's keys, for scripts to start with."""


@dataclass(frozen=True, slots=True)
class Keys:
    """The Redis keys and Kafka topics of namespace ``ns``."""

    ns: str

    def topic(self, name: str) -> str:
        return f"{self.ns}.{name}"

    def everything(self) -> str:
        """A ``SCAN`` pattern of every key of the namespace."""
        return f"{self.ns}:*"

    # ------------------------------------------------------------ the live index

    def caregiver(self, caregiver_id: str) -> str:
        return f"{self.ns}:{_CAREGIVER}:{caregiver_id}"

    def caregiver_prefix(self) -> str:
        """What every caregiver's key starts with (her id follows)."""
        return self.caregiver("")

    def cell(self, level: str, agency_id: str, cell: str) -> str:
        return f"{self.ns}:{level}:{agency_id}:{cell}"

    def cell_prefix(self, level: str) -> str:
        """What every cell key of ``level`` starts with (``{agency}:{cell}`` follows)."""
        return f"{self.ns}:{level}:"

    def shapes(self) -> str:
        return f"{self.ns}:{_SHAPES}"

    def live_seq(self) -> str:
        return f"{self.ns}:{_LIVE_SEQ}"

    def live_changes(self) -> str:
        return f"{self.ns}:{_LIVE_CHANGES}"

    # ------------------------------------------------------------ offers and outboxes

    def offer(self, offer_id: str) -> str:
        return f"{self.ns}:offer:{offer_id}"

    def out_channel(self, recipient: str) -> str:
        return f"{self.ns}:out:{recipient}"

    def outbox(self, recipient: str) -> str:
        return f"{self.ns}:outbox:{recipient}"

    def out_position(self, recipient: str) -> str:
        return f"{self.ns}:outpos:{recipient}"

    def announced(self, announcement_id: str) -> str:
        return f"{self.ns}:announced:{announcement_id}"

    # ------------------------------------------------------------ visits and health

    def visit_trackers(self) -> str:
        return f"{self.ns}:visits:trackers"

    def fence_version(self) -> str:
        return f"{self.ns}:visits:fences"

    def incarnation(self) -> str:
        return f"{self.ns}:incarnation"

    def revoked(self, role: str, subject: str) -> str:
        """When a person's tokens were last revoked (epoch s): those issued until then are
        refused."""
        return f"{self.ns}:revoked:{role}:{subject}"

    def worker_health(self, role: str) -> str:
        return f"{self.ns}:health:worker:{role}"

    def worker_group(self, role: str) -> str:
        """The Kafka consumer group (and Faust app id) of a role's workers (``all``: one group
        for every agent)."""
        return f"{self.ns}-worker" + ("" if role == "all" else f"-{role}")

    def geo(self, agency_id: str) -> str:
        """``careknot bench dispatch``'s Redis GEO set of an agency, the search it compares with."""
        return f"{self.ns}:geo:{agency_id}"
