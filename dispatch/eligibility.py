"""Who may take an incident, beyond being near, free and freshly located. Pure; time passed in.

A caregiver's :class:`Profile` (skills, certificates, shifts, time worked) is checked against
the incident's kind and her agency's :class:`AgencyRules`:

- **skills**: with ``require_skills``, she holds every skill the kind needs (``NEEDS``);
- **certificates**: a certificate for a needed skill (or one in ``ALWAYS_CHECKED``) that has
  expired rules her out, whatever the agency's rules: an expired certificate is known;
- **shift**: with rows in her roster, one covers now; with none, she is on call unless the
  agency sets ``require_shift`` (the default is False, so agencies that keep no roster, like
  the simulated city, dispatch to whoever is free);
- **working time**: the UK limits of :mod:`dispatch.worktime`, counting the response itself.

Availability and position freshness are :func:`dispatch.ranking.is_eligible`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dispatch.worktime import RESPONSE_S, Period, daily_rest_ok, weekly_average_ok

NEEDS: Mapping[str, frozenset[str]] = {
    "fall": frozenset({"moving_and_handling"}),
    "sos": frozenset({"first_aid"}),
    "dose_missed": frozenset({"medication"}),
    "dispenser_tamper": frozenset({"medication"}),
}
ALWAYS_CHECKED = frozenset({"dbs"})  # a criminal-record check must be current for any call

MISSING_SKILL = "missing_skill"
CERTIFICATE_EXPIRED = "certificate_expired"
OFF_SHIFT = "off_shift"
NO_SHIFT = "no_shift"
WEEKLY_HOURS = "weekly_hours"
DAILY_REST = "daily_rest"


@dataclass(frozen=True, slots=True)
class AgencyRules:
    """What an agency asks beyond the law. Agencies without a rules row get these defaults."""

    require_skills: bool = False
    require_shift: bool = False


@dataclass(frozen=True, slots=True)
class Profile:
    """What the roster knows of one caregiver; empty when it knows nothing."""

    skills: frozenset[str] = frozenset()
    certificates: Mapping[str, float] = field(default_factory=dict)  # kind -> expires_at
    shifts: tuple[Period, ...] = ()
    worked: tuple[Period, ...] = ()


def needs_of(kind: str, needs: Mapping[str, frozenset[str]] = NEEDS) -> frozenset[str]:
    return needs.get(kind, frozenset())


def ineligibility(
    profile: Profile,
    *,
    needs: frozenset[str],
    rules: AgencyRules,
    now: float,
    response_s: float = RESPONSE_S,
) -> str | None:
    """Why she may not take it (a stable reason code), or None when she may."""
    if rules.require_skills and not needs <= profile.skills:
        return MISSING_SKILL
    if any(profile.certificates.get(k, now + 1) <= now for k in needs | ALWAYS_CHECKED):
        return CERTIFICATE_EXPIRED
    shift = _shift_reason(profile.shifts, rules, now)
    if shift is not None:
        return shift
    if not weekly_average_ok(profile.worked, now, response_s):
        return WEEKLY_HOURS
    if not daily_rest_ok(profile.worked, now, response_s):
        return DAILY_REST
    return None


def ruled_out(
    profiles: Mapping[str, Profile], *, needs: frozenset[str], rules: AgencyRules, now: float
) -> dict[str, str]:
    """Those of ``profiles``' caregivers who may not take it, each with the reason, in the
    order given."""
    out = {}
    for caregiver_id, profile in profiles.items():
        why = ineligibility(profile, needs=needs, rules=rules, now=now)
        if why is not None:
            out[caregiver_id] = why
    return out


def _shift_reason(shifts: tuple[Period, ...], rules: AgencyRules, now: float) -> str | None:
    if not shifts:
        return NO_SHIFT if rules.require_shift else None
    if any(s.start <= now < s.end for s in shifts):
        return None
    return OFF_SHIFT
