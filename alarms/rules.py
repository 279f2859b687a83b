"""Which device events raise an alarm and which clear one: a table, no I/O.

A dispenser that says a dose was missed raises ``dose_missed`` on the patient, until a dose is
taken; a tampered dispenser raises ``tamper`` on the device; a jammed one ``dispenser_jam`` on
the device, until a dose comes out of it again; a second dispense tried for a dose already
taken raises ``dose_double_attempt`` on the patient (an overdose risk); a dispenser almost
empty raises ``low_supply`` (minor) on the patient, until it is refilled. Other events raise
nothing here (falls and SOS calls are emergencies, dispatched; motion and doors feed the
routine models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from alarms.lifecycle import Severity

Subject = Literal["device", "patient"]
LOW_SUPPLY = "low_supply"
JAM = "dispenser_jam"


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


Rule = Raise | Clear

RULES: dict[str, tuple[Rule, ...]] = {
    "dose_missed": (
        Raise("dose_missed", "major", "patient", "a dose was not taken in its window"),
    ),
    "dose_taken": (Clear("dose_missed", "patient"), Clear(JAM, "device")),
    "dispenser_tamper": (Raise("tamper", "major", "device", "the dispenser was tampered with"),),
    "dispenser_jam": (Raise(JAM, "major", "device", "the dispenser is jammed: no dose comes out"),),
    "dose_double_attempt": (
        Raise(
            "dose_double_attempt",
            "major",
            "patient",
            "a second dose was tried for a dose already taken: an overdose risk",
        ),
    ),
    "dispenser_low_supply": (
        Raise(LOW_SUPPLY, "minor", "patient", "the dispenser is almost empty"),
    ),
    "dispenser_refilled": (Clear(LOW_SUPPLY, "patient"),),
}


def rules_for(event_kind: str) -> tuple[Rule, ...]:
    """What a device event of this kind does to alarms, in order (nothing: empty)."""
    return RULES.get(event_kind, ())


def source_of(on: Subject, device_id: str, patient_id: str) -> str:
    return f"device:{device_id}" if on == "device" else f"patient:{patient_id}"
