"""The kinds of home device the system knows: what each may say, how often it beats, and how
urgent its silence is. A table, no I/O.

A kind not in :data:`KINDS` cannot be judged (no heartbeat to expect, no events to check), so
it is refused where a device is registered (``adapters.storage.postgres.Database.upsert_devices``)
and, should a row of one reach the registry all the same, every message of such a device is
refused at ingest as :data:`UNKNOWN_KIND`. An event a device of its kind never sends (a fall
detector's ``dose_taken``) is refused at ingest as :data:`EVENT_NOT_FOR_KIND`: a device sending
it is set up wrong, and nothing downstream should act on it.

Adding a kind is a row here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["critical", "major", "minor", "warning"]
"""As ``alarms.lifecycle.Severity`` (the cores do not import each other)."""

UNKNOWN_KIND = "unknown_device_kind"
EVENT_NOT_FOR_KIND = "event_not_for_kind"


@dataclass(frozen=True, slots=True)
class DeviceKind:
    name: str
    events: frozenset[str]
    """The event types a device of this kind may send on its ``evt`` topic."""
    heartbeat_s: float
    """How often it is expected to beat, unless its heartbeats say otherwise."""
    offline: Severity
    """The severity of its silence: what the resident loses while it is offline."""
    what: str
    """What it is, for an alarm's detail."""


_EMERGENCY = frozenset({"fall", "sos"})

KINDS: dict[str, DeviceKind] = {
    k.name: k
    for k in (
        # a resident who falls or presses for help and is not heard: the worst silence
        DeviceKind("fall_detector", _EMERGENCY, 60.0, "critical", "fall detector"),
        DeviceKind("pendant", _EMERGENCY, 60.0, "critical", "SOS pendant"),
        DeviceKind(
            "dispenser",
            frozenset(
                {
                    "dose_due",
                    "dose_taken",
                    "dose_late",
                    "dose_missed",
                    "dose_double_attempt",
                    "dispenser_tamper",
                    "dispenser_jam",
                    "dispenser_low_supply",
                    "dispenser_refilled",
                }
            ),
            300.0,
            "major",  # doses go on being watched by their schedule; tamper and jams are not
            "medication dispenser",
        ),
        DeviceKind("vitals_monitor", frozenset(), 60.0, "major", "vitals monitor"),
        DeviceKind("motion_sensor", frozenset({"motion"}), 300.0, "minor", "motion sensor"),
        DeviceKind(
            "door_sensor", frozenset({"door_open", "door_closed"}), 300.0, "minor", "door sensor"
        ),
        # occupancy pads: she got into or out of her bed, or her chair
        DeviceKind("bed_sensor", frozenset({"bed_in", "bed_out"}), 300.0, "minor", "bed sensor"),
        DeviceKind(
            "chair_sensor", frozenset({"chair_in", "chair_out"}), 300.0, "minor", "chair sensor"
        ),
    )
}


def kind_of(name: str | None) -> DeviceKind | None:
    """The kind called ``name``, or None when the system does not know it."""
    return KINDS.get(name) if name is not None else None


def event_refusal(kind: str | None, event_type: str) -> str | None:
    """Why an event of ``event_type`` from a device of ``kind`` is refused, or None when it is
    one its kind sends."""
    known = kind_of(kind)
    if known is None:
        return UNKNOWN_KIND
    return None if event_type in known.events else EVENT_NOT_FOR_KIND
