"""What a vitals monitor measures, in which unit, and which values a living body can have.

A value outside its measure's :data:`PLAUSIBLE` range is no reading of a person (a sensor off
the skin, a garbled packet): ingest refuses the message that carries it (``out_of_range``),
and the filters drop it should one reach them.
"""

from __future__ import annotations

from typing import Literal

Measure = Literal["hr", "spo2", "temp", "bp_sys", "bp_dia"]
MEASURES: tuple[Measure, ...] = ("hr", "spo2", "temp", "bp_sys", "bp_dia")
"""In the order a sample lists them."""

UNITS: dict[Measure, str] = {
    "hr": "bpm",
    "spo2": "%",
    "temp": "°C",
    "bp_sys": "mmHg",
    "bp_dia": "mmHg",
}
NAMES: dict[Measure, str] = {
    "hr": "heart rate",
    "spo2": "SpO2",
    "temp": "temperature",
    "bp_sys": "systolic pressure",
    "bp_dia": "diastolic pressure",
}
PLAUSIBLE: dict[Measure, tuple[float, float]] = {
    "hr": (20.0, 250.0),  # below, no circulation a wrist sensor could read; above, none
    "spo2": (50.0, 100.0),  # a pulse oximeter reads nothing meaningful below 50 %
    "temp": (25.0, 45.0),  # skin (a cold wrist near 25 °C) to the hottest fever survived
    "bp_sys": (50.0, 280.0),
    "bp_dia": (20.0, 180.0),
}


def plausible(measure: Measure, value: float) -> bool:
    """Whether ``value`` can be a living person's ``measure`` (NaN never is)."""
    low, high = PLAUSIBLE[measure]
    return low <= value <= high


def implausible(values: dict[Measure, float]) -> list[Measure]:
    """The measures of a sample whose value no living person has; a diastolic pressure not
    below the systolic one taken with it counts too."""
    wrong = [m for m, v in values.items() if not plausible(m, v)]
    sys, dia = values.get("bp_sys"), values.get("bp_dia")
    if sys is not None and dia is not None and dia >= sys and "bp_dia" not in wrong:
        wrong.append("bp_dia")
    return wrong
