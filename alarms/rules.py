"""Which device events raise an alarm and which clear one: a table, no I/O.

A dispenser that says a dose was missed raises ``dose_missed`` on the patient, until a dose is
taken; a tampered dispenser raises ``tamper`` on the device. Other events raise nothing here
(falls and SOS calls are emergencies, dispatched; motion and doors feed the routine models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from alarms.lifecycle import Severity

Subject = Literal["device", "patient"]


@dataclass(frozen=True, slots=True)
class Raise:
    kind: str
    severity: Severity
    on: Subject
    detail: str


@dataclass(frozen=True, slots=True)
class Clear:
    kind: str
    on: Subject


RULES: dict[str, Raise | Clear] = {
    "dose_missed": Raise("dose_missed", "major", "patient", "a dose was not taken in its window"),
    "dose_taken": Clear("dose_missed", "patient"),
    "dispenser_tamper": Raise("tamper", "major", "device", "the dispenser was tampered with"),
}


def rule_for(event_kind: str) -> Raise | Clear | None:
    """What a device event of this kind does to alarms, if anything."""
    return RULES.get(event_kind)


def source_of(on: Subject, device_id: str, patient_id: str) -> str:
    return f"device:{device_id}" if on == "device" else f"patient:{patient_id}"
