"""``FenceTracker``: when a caregiver has arrived at, left, or passed a patient's home.

Pure: the time is the fix's own ``ts`` (so a replay gives the same transitions whatever the wall
clock), and what the index says about each fix is passed in. Per (caregiver, fence):

- ``arrived`` once she has been seen wholly inside for ``min_dwell_in_s`` (its ``at`` is the
  first of those fixes); ``left`` once seen wholly outside for ``min_dwell_out_s`` after that.
  A wholly inside fix while leaving (or outside while arriving) cancels the pending change.
- A fix whose accuracy circle straddles the edge changes nothing: it neither starts, confirms
  nor cancels a change. Fixes coarser than ``max_accuracy_m``, and fixes not newer than the
  last one, are ignored altogether.
- ``passed``: she went through without staying; either a pending arrival was cancelled by a
  wholly outside fix, or the straight segment between two fixes, both outside, crossed the
  fence (sparse fixes on either side of a home). A pass is never between ``arrived`` and
  ``left``: those two alternate, starting with ``arrived``.

The state is small (the last fix, and the fences she is in or arriving at) and round-trips
through ``to_dict``/``from_dict``, so it survives a worker restart.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from geofence.fences import Relation
from geofence.geodesy import haversine_m, haversine_m_arrays

TransitionKind = Literal["arrived", "left", "passed"]
Segment = tuple[float, float, float, float]
"""lat0, lon0, lat1, lon1."""


class Fix(NamedTuple):
    """One caregiver position: degrees, epoch seconds, accuracy radius in metres."""

    caregiver_id: str
    lat: float
    lon: float
    ts: float
    acc: float = 0.0


@dataclass(frozen=True, slots=True)
class Transition:
    """``kind`` at ``fence_id``; ``at`` when it began, ``fix`` the fix that decided it.

    ``at`` is the first fix inside (``arrived``, and a cancelled arrival's ``passed``), the first
    fix outside (``left``), or the earlier fix of a crossing segment (``passed``).
    """

    kind: TransitionKind
    caregiver_id: str
    fence_id: str
    at: float
    fix: Fix


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    min_dwell_in_s: float = 60.0
    min_dwell_out_s: float = 120.0
    max_accuracy_m: float = 50.0
    """Coarser fixes are ignored (the index classifies accuracies up to its ``reach_m``)."""
    min_segment_m: float = 50.0
    """Consecutive fixes closer than this are not tested for crossing: dense enough already."""
    max_gap_s: float = 900.0
    """Fixes farther apart in time are not joined by a straight segment."""


@dataclass(slots=True)
class FenceState:
    """In or out, and since when the evidence for the other side began (``None``: none)."""

    inside: bool = False
    since: float | None = None


class FenceTracker:
    """One caregiver's state against every fence she is in or arriving at."""

    def __init__(
        self,
        caregiver_id: str,
        config: TrackerConfig | None = None,
        *,
        last: Fix | None = None,
        fences: Mapping[str, FenceState] | None = None,
    ) -> None:
        self.caregiver_id = caregiver_id
        self.config = config or TrackerConfig()
        self.last = last
        self._fences: dict[str, FenceState] = dict(fences or {})
        self.revision = 0
        """Moves on each time her fence states change (what a restart must get back exactly),
        so whoever keeps her can tell whether they changed since it last looked."""

    @property
    def inside(self) -> frozenset[str]:
        """The fences she has arrived at and not left."""
        return frozenset(f for f, s in self._fences.items() if s.inside)

    def fence_states(self) -> tuple[tuple[str, bool, float | None], ...]:
        """Where she stands with each fence she is in or arriving at: what a restart must get
        back exactly (``last`` it may get back a little old)."""
        return tuple((f, s.inside, s.since) for f, s in sorted(self._fences.items()))

    def usable(self, fix: Fix) -> bool:
        """Whether ``fix`` counts at all: hers, newer than the last, accurate enough."""
        return self._usable_after(self.last, fix)

    def segment_to(self, fix: Fix) -> Segment | None:
        """The segment from the last fix to ``fix``, if it is worth testing for crossings."""
        return self._segment(self.last, fix)

    def _usable_after(self, last: Fix | None, fix: Fix) -> bool:
        newer = last is None or fix.ts > last.ts
        return (
            fix.caregiver_id == self.caregiver_id
            and newer
            and fix.acc <= self.config.max_accuracy_m
        )

    def _segment(self, last: Fix | None, fix: Fix) -> Segment | None:
        c = self.config
        if last is None or not self._usable_after(last, fix) or fix.ts - last.ts > c.max_gap_s:
            return None
        if haversine_m(last.lat, last.lon, fix.lat, fix.lon) < c.min_segment_m:
            return None
        return last.lat, last.lon, fix.lat, fix.lon

    def update(
        self, fix: Fix, relations: Mapping[str, Relation], crossed: Collection[str] = ()
    ) -> list[Transition]:
        """Take one fix; ``relations`` lists the fences it is not wholly outside of, and
        ``crossed`` the fences the segment from the last fix (see ``segment_to``) met."""
        if not self.usable(fix):
            return []
        if not (self._fences or relations or crossed):  # near no fence: only she moved
            self.last = fix
            return []
        quiet = {f for f in crossed if f not in self._fences}
        transitions = []
        for fence_id in sorted(self._fences.keys() | relations.keys()):
            state = self._fences.setdefault(fence_id, FenceState())
            was = (state.inside, state.since)
            step = self._step(state, relations.get(fence_id, Relation.OUTSIDE), fix.ts)
            if step is not None:
                kind, at = step
                transitions.append(Transition(kind, self.caregiver_id, fence_id, at, fix))
            if (state.inside, state.since) != was:
                self.revision += 1
            if not state.inside and state.since is None:
                del self._fences[fence_id]  # out, and nothing pending: nothing to keep
        began = self.last.ts if self.last is not None else fix.ts
        for fence_id in sorted(quiet):
            if relations.get(fence_id, Relation.OUTSIDE) == Relation.OUTSIDE:
                transitions.append(Transition("passed", self.caregiver_id, fence_id, began, fix))
        self.last = fix
        return transitions

    def _step(
        self, state: FenceState, relation: Relation, ts: float
    ) -> tuple[TransitionKind, float] | None:
        """Move one fence's state on one fix; a transition and when it began, if any."""
        if relation == Relation.STRADDLES:
            return None
        if (relation == Relation.INSIDE) == state.inside:  # evidence for where she is
            began, state.since = state.since, None
            return ("passed", began) if began is not None and not state.inside else None
        if state.since is None:
            state.since = ts
        dwell = self.config.min_dwell_out_s if state.inside else self.config.min_dwell_in_s
        if ts - state.since < dwell:
            return None
        began, state.since, state.inside = state.since, None, not state.inside
        return ("arrived" if state.inside else "left"), began

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready value of the state (not the config)."""
        return {
            "caregiver_id": self.caregiver_id,
            "last": None if self.last is None else list(self.last[1:]),
            "fences": {f: [s.inside, s.since] for f, s in sorted(self._fences.items())},
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], config: TrackerConfig | None = None
    ) -> FenceTracker:
        """The tracker ``to_dict`` described; ``ValueError`` if ``data`` is not such a value."""
        try:
            caregiver_id = str(data["caregiver_id"])
            last = data["last"]
            fix = None if last is None else Fix(caregiver_id, *map(float, last))
            fences = {
                str(f): FenceState(bool(inside), None if since is None else float(since))
                for f, (inside, since) in data["fences"].items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a tracker state: {exc}") from exc
        return cls(caregiver_id, config, last=fix, fences=fences)


def segments_ahead(
    trackers: Mapping[str, FenceTracker], fixes: Sequence[Fix]
) -> tuple[list[Segment | None], list[bool]]:
    """For a batch of several caregivers' fixes, in order: each fix's segment, and whether
    her tracker will take it, as feeding them one by one would find them (``segment_to``,
    ``usable``); the trackers do not move. The segments' lengths are measured all at once."""
    usable = [False] * len(fixes)
    joins: list[tuple[int, Fix, Fix, float]] = []  # fix, from, to, the tracker's shortest
    ahead: dict[str, Fix | None] = {}  # each caregiver's last fix as of the fix reached
    for i, fix in enumerate(fixes):
        tracker = trackers[fix.caregiver_id]
        last = ahead.get(fix.caregiver_id, tracker.last)
        if not tracker._usable_after(last, fix):
            continue
        usable[i], ahead[fix.caregiver_id] = True, fix
        c = tracker.config
        if last is not None and fix.ts - last.ts <= c.max_gap_s:
            joins.append((i, last, fix, c.min_segment_m))
    segments: list[Segment | None] = [None] * len(fixes)
    if joins:
        ends = np.array([(a.lat, a.lon, b.lat, b.lon) for _, a, b, _ in joins]).T
        for (i, a, b, shortest), metres in zip(
            joins, haversine_m_arrays(*ends).tolist(), strict=True
        ):
            if metres >= shortest:
                segments[i] = (a.lat, a.lon, b.lat, b.lon)
    return segments, usable
