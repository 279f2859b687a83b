"""Eligibility beyond distance: skills, certificates, shifts and working time, per agency rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch.eligibility import (
    CERTIFICATE_EXPIRED,
    DAILY_REST,
    MISSING_SKILL,
    NO_SHIFT,
    OFF_SHIFT,
    WEEKLY_HOURS,
    AgencyRules,
    Profile,
    ineligibility,
    needs_of,
)
from dispatch.worktime import HOUR_S, WEEK_S, Period

NOW = 1_700_000_000.0
FALL = needs_of("fall")
LAX = AgencyRules()
STRICT = AgencyRules(require_skills=True, require_shift=True)
ON_SHIFT = (Period(NOW - 2 * HOUR_S, NOW + 6 * HOUR_S),)
HANDLER = frozenset({"moving_and_handling", "first_aid"})


def hours(start_h: float, end_h: float) -> Period:
    return Period(NOW - start_h * HOUR_S, NOW - end_h * HOUR_S)


OVERWORKED = tuple(
    Period(NOW - (k + 1) * WEEK_S, NOW - (k + 1) * WEEK_S + 55 * HOUR_S) for k in range(17)
)


@pytest.mark.parametrize(
    ("profile", "rules", "reason"),
    [
        (Profile(), LAX, None),  # an agency with no roster dispatches to whoever is free
        (Profile(), STRICT, MISSING_SKILL),
        (Profile(skills=HANDLER), STRICT, NO_SHIFT),
        (Profile(skills=HANDLER, shifts=ON_SHIFT), STRICT, None),
        (Profile(skills=frozenset({"first_aid"}), shifts=ON_SHIFT), STRICT, MISSING_SKILL),
        (Profile(skills=frozenset({"first_aid"})), LAX, None),
        # certificates: expired rules her out whatever the agency's rules
        (Profile(certificates={"moving_and_handling": NOW - 1}), LAX, CERTIFICATE_EXPIRED),
        (Profile(certificates={"moving_and_handling": NOW}), LAX, CERTIFICATE_EXPIRED),
        (Profile(certificates={"moving_and_handling": NOW + 1}), LAX, None),
        (Profile(certificates={"dbs": NOW - 86400}), LAX, CERTIFICATE_EXPIRED),
        (Profile(certificates={"medication": NOW - 1}), LAX, None),  # a fall needs no meds
        # shifts: with a roster she must be on shift now, whatever the agency's rules
        (Profile(shifts=(hours(10, 2),)), LAX, OFF_SHIFT),
        (Profile(shifts=(hours(-1, -9),)), LAX, OFF_SHIFT),
        (Profile(shifts=(hours(10, 2), *ON_SHIFT)), LAX, None),
        (Profile(shifts=(Period(NOW, NOW + HOUR_S),)), LAX, None),  # starts now
        (Profile(shifts=(Period(NOW - HOUR_S, NOW),)), LAX, OFF_SHIFT),  # ended now
        # working time
        (Profile(worked=OVERWORKED), LAX, WEEKLY_HOURS),
        (Profile(worked=(hours(14, 0),)), LAX, DAILY_REST),
        (Profile(worked=(hours(8, 0),)), LAX, None),
    ],
)
def test_ineligibility(profile: Profile, rules: AgencyRules, reason: str | None) -> None:
    assert ineligibility(profile, needs=FALL, rules=rules, now=NOW) == reason


@pytest.mark.parametrize(
    ("kind", "needs"),
    [
        ("fall", {"moving_and_handling"}),
        ("sos", {"first_aid"}),
        ("dose_missed", {"medication"}),
        ("motion", set()),
    ],
)
def test_needs_by_kind(kind: str, needs: set[str]) -> None:
    assert needs_of(kind) == needs


def test_the_needs_map_is_configurable() -> None:
    assert needs_of("fall", {"fall": frozenset({"hoist"})}) == {"hoist"}


profiles = st.builds(
    Profile,
    skills=st.frozensets(st.sampled_from(["moving_and_handling", "first_aid", "medication"])),
    certificates=st.dictionaries(
        st.sampled_from(["moving_and_handling", "dbs"]), st.floats(NOW - 1e6, NOW + 1e6)
    ),
    shifts=st.lists(st.builds(hours, st.floats(-24, 48), st.floats(-48, 24))).map(tuple),
    worked=st.lists(st.builds(hours, st.floats(0, 3000), st.floats(0, 3000))).map(tuple),
)
rules = st.builds(AgencyRules, st.booleans(), st.booleans())


@given(profile=profiles, agency=rules, extra=st.builds(hours, st.floats(0, 48), st.floats(0, 48)))
def test_more_work_never_makes_a_caregiver_eligible(
    profile: Profile, agency: AgencyRules, extra: Period
) -> None:
    busier = Profile(profile.skills, profile.certificates, profile.shifts, (*profile.worked, extra))
    before = ineligibility(profile, needs=FALL, rules=agency, now=NOW)
    after = ineligibility(busier, needs=FALL, rules=agency, now=NOW)
    assert before is None or after is not None


@given(profile=profiles)
def test_strict_rules_never_admit_someone_lax_rules_refuse(profile: Profile) -> None:
    if ineligibility(profile, needs=FALL, rules=LAX, now=NOW) is not None:
        assert ineligibility(profile, needs=FALL, rules=STRICT, now=NOW) is not None


@given(profile=profiles, agency=rules)
def test_a_new_skill_never_makes_a_caregiver_ineligible(
    profile: Profile, agency: AgencyRules
) -> None:
    skilled = Profile(
        HANDLER | profile.skills, profile.certificates, profile.shifts, profile.worked
    )
    if ineligibility(profile, needs=FALL, rules=agency, now=NOW) is None:
        assert ineligibility(skilled, needs=FALL, rules=agency, now=NOW) is None
