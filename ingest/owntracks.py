"""Pure parsing of what the OwnTracks app publishes, unchanged, in MQTT mode.

The app publishes to ``owntracks/{user}/{device}`` a JSON object whose ``_type`` says what it
is: ``location`` (a fix), ``lwt`` (the last will the broker publishes when the phone drops off)
and, depending on platform and version, others (``transition``, ``waypoint``, ``card``,
``status``, ``encrypted``, ...). A location becomes a fix once the device registry has mapped
``{user}/{device}`` to a caregiver (see :mod:`ingest.registry`); the last will is the phone's
presence. The types that are no fix and no presence (:data:`IGNORED_TYPES`) are recognised
and counted, never refused, since the app sends them as a matter of course: ``transition``
(the app's own region events: ingest follows homes on the fixes, and the app sends a location
with each), ``waypoint``/``waypoints`` (regions defined on the phone), ``card``, ``status``,
``beacon``, ``steps``, and the ``cmd``, ``request`` and ``configuration`` that travel to the
app (their echo). Refused with a reason, so that a phone set up wrong is seen instead of
silently vanishing: ``encrypted`` (the app's payload encryption is on, with a key ingest does
not hold: every fix of the phone would be lost) and ``unknown_type`` (a ``_type`` OwnTracks
does not document: it could be a fix). Nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingest.parse import Limits, load_object, validate
from kernel.contracts import OWNTRACKS_NAME, LocationPayload
from kernel.errors import RejectedPayload

SUBSCRIPTION = "owntracks/+/+"
_TOPIC = re.compile(rf"^owntracks/(?P<user>{OWNTRACKS_NAME})/(?P<device>{OWNTRACKS_NAME})$")
IGNORED_TYPES = frozenset(
    {
        "beacon",
        "card",
        "cmd",
        "configuration",
        "request",
        "status",
        "steps",
        "transition",
        "waypoint",
        "waypoints",
    }
)
"""The documented types that are no fix and no presence: counted by type, not refused."""
ENCRYPTED = "encrypted"
"""The reason, and the ``_type``, of a payload the app encrypted."""
UNKNOWN_TYPE = "unknown_type"
"""The reason for a ``_type`` OwnTracks does not document."""
KNOWN_TYPES = IGNORED_TYPES | {"location", "lwt", ENCRYPTED}


@dataclass(frozen=True, slots=True)
class OwnTracksDevice:
    """Who an OwnTracks topic names: the app's user and device."""

    user: str
    device: str


@dataclass(frozen=True, slots=True)
class OwnTracksLocation:
    device: OwnTracksDevice
    location: LocationPayload


@dataclass(frozen=True, slots=True)
class OwnTracksLastWill:
    """The broker's notice that the phone went away (``tst`` is when it connected)."""

    device: OwnTracksDevice
    tst: int | None


@dataclass(frozen=True, slots=True)
class OwnTracksOther:
    """A message of one of the :data:`IGNORED_TYPES`, its ``kind``."""

    device: OwnTracksDevice
    kind: str


OwnTracksMessage = OwnTracksLocation | OwnTracksLastWill | OwnTracksOther


def is_owntracks(topic: str) -> bool:
    return topic.startswith("owntracks/")


def device_of(topic: str) -> OwnTracksDevice:
    m = _TOPIC.fullmatch(topic)
    if m is None:
        raise RejectedPayload("bad_topic", f"not an OwnTracks topic: {topic[:200]!r}", topic=topic)
    return OwnTracksDevice(m["user"], m["device"])


def parse(topic: str, payload: bytes, limits: Limits) -> OwnTracksMessage:
    """One OwnTracks message, or :class:`RejectedPayload` if it is not one, is encrypted
    (``encrypted``) or of a type OwnTracks does not document (``unknown_type``)."""
    device = device_of(topic)
    raw = load_object(topic, payload, limits)
    kind = raw.get("_type")
    if not isinstance(kind, str):
        raise RejectedPayload("invalid_fields", "_type: missing or not a string", topic=topic)
    if kind == "location":
        return OwnTracksLocation(device, validate(LocationPayload, topic, raw))
    if kind == "lwt":
        tst = raw.get("tst")
        return OwnTracksLastWill(device, tst if isinstance(tst, int) else None)
    if kind in IGNORED_TYPES:
        return OwnTracksOther(device, kind)
    if kind == ENCRYPTED:
        detail = "the app encrypts its payloads (its key is not ingest's): turn encryption off"
        raise RejectedPayload(ENCRYPTED, detail, topic=topic)
    raise RejectedPayload(UNKNOWN_TYPE, f"_type {kind[:100]!r} is not OwnTracks'", topic=topic)
