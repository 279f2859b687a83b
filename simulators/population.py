"""The simulated city of Leeds laid out: its agency, its homes with fall detectors (and
medication dispensers: ``simulators.dispensers``) and its caregivers with their skills, the same
for the same seed; and the knobs of a simulation."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple

from simulators.geo import Point, random_point

AGENCY_ID = "leeds"
AGENCY_NAME = "CareKnot Leeds Home Care"
CENTRE = Point(53.7997, -1.5492)

_FIRST = (  # noqa: SIM905 (names read better as prose)
    "Olivia Amelia Isla Ava Mia Sophie Grace Aisha Priya Zara Chloe Emily Hannah Megan Niamh "
    "Jack Oliver Harry George Noah Mohammed Imran Rajesh Tom Daniel Liam Callum Jamal Kwame Ryan"
).split()
_LAST = (  # noqa: SIM905 (names read better as prose)
    "Smith Jones Taylor Brown Wilson Walker Wood Thompson White Hughes Khan Hussain Patel Ahmed "
    "Begum Shah Clarke Robinson Wright Hall Green Lee Harrison Mitchell Kaur Singh Murphy Kelly"
).split()
_ELDER_FIRST = (  # noqa: SIM905 (names read better as prose)
    "Margaret Doris Joan Dorothy Eileen Edna Mabel Irene Betty Jean Harold Arthur Albert Stanley "
    "Kenneth Ronald Walter Norman Dennis Frank Gwen Sheila Barbara Alan Brian"
).split()
_OPTIONAL_SKILLS = (
    ("moving_and_handling", 0.85),
    ("medication", 0.6),
    ("dementia", 0.4),
    ("end_of_life", 0.2),
)


@dataclass(frozen=True, slots=True)
class CityConfig:
    caregivers: int = 50
    homes: int = 200
    fix_interval_s: float = 3.0
    falls_per_minute: float = 0.5
    seed: int = 7
    time_scale: float = 30.0
    """How much faster than real life a wandering caregiver (one with no rostered visits) finishes
    a stop (dwell 15–45 min / scale); rostered visits keep their real minutes."""
    answer_offers: bool = True
    answer_delay_s: tuple[float, float] = (2.0, 10.0)
    """Real seconds a simulated caregiver takes to answer an offer (not compressed)."""
    accept_probability: float = 0.7
    outages_per_hour: float = 2.0
    radius_m: float = 8000.0
    dispensers: bool = True
    """Each home has a medication dispenser with a schedule (``simulators.dispensers``)."""
    vitals_monitors: float = 0.25
    """Of homes, those whose resident wears a vitals monitor (``simulators.vitals``)."""
    vitals_episodes_per_hour: float = 1.0
    """Genuine episodes (a racing heart, a falling SpO2, a fever) across the city's monitors."""
    residents: bool = True
    """Each home has a resident whose ambient sensors (PIRs, doors, bed and chair) live her days
    (``simulators.households``): her last weeks seeded as history, then live."""
    resident_anomaly_rate: float = 0.0
    """Anomalies a home-day the residents live beyond their first 14 days of each 30 (0: none
    but the fall asked for)."""
    visits: bool = True
    """Each caregiver has a day of visits (``simulators.visit_plan``), rostered through the
    HTTP API (``simulators.scheduling``), and drives to them instead of wandering."""
    resident_fall_after_min: float | None = None
    """A resident falls silently this many minutes after the start (the first seen up and
    about from then on), and lies until help comes."""


class Home(NamedTuple):
    patient_id: str
    device_id: str
    name: str
    at: Point


class Caregiver(NamedTuple):
    id: str
    name: str
    skills: tuple[str, ...]


def populate(config: CityConfig) -> tuple[list[Home], list[Caregiver]]:
    """The city's homes and caregivers, the same for the same seed."""
    rng = random.Random(f"{config.seed}:population")
    homes = [
        Home(
            f"{AGENCY_ID}-p{i:03d}",
            f"{AGENCY_ID}-fd{i:03d}",
            f"{rng.choice(_ELDER_FIRST)} {rng.choice(_LAST)}",
            random_point(rng, CENTRE, config.radius_m),
        )
        for i in range(1, config.homes + 1)
    ]
    caregivers = []
    for i in range(1, config.caregivers + 1):
        extra = tuple(skill for skill, p in _OPTIONAL_SKILLS if rng.random() < p)
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        caregivers.append(Caregiver(f"{AGENCY_ID}-cg{i:02d}", name, ("first_aid", *extra)))
    return homes, caregivers
