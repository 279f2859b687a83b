"""Feeding trackers from the index: what a stream agent calls for one fix or a batch of fixes.

For each fix the index classifies it against nearby fences (accuracy-aware) and, when the
tracker asks for it (sparse fixes), names the fences the segment from the previous fix crossed.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence

import numpy as np

from geofence.fences import Relation
from geofence.index import FenceIndex
from geofence.transitions import FenceTracker, Fix, TrackerConfig, Transition


def observe(index: FenceIndex, tracker: FenceTracker, fix: Fix) -> list[Transition]:
    """One fix through the index into its caregiver's tracker."""
    segment = tracker.segment_to(fix)
    crossed = index.crossing(*segment) if segment is not None else set()
    return tracker.update(fix, index.relations_at(fix.lat, fix.lon, fix.acc), crossed)


def observe_many(
    index: FenceIndex,
    trackers: MutableMapping[str, FenceTracker],
    fixes: Sequence[Fix],
    config: TrackerConfig | None = None,
) -> list[Transition]:
    """A batch of fixes (any caregivers, in time order per caregiver), classified in one go.

    Trackers missing from ``trackers`` are created with ``config``.
    """
    found = index.classify(
        np.array([f.lat for f in fixes]),
        np.array([f.lon for f in fixes]),
        np.array([f.acc for f in fixes]),
    )
    relations: list[dict[str, Relation]] = [{} for _ in fixes]
    pairs = zip(found.fix.tolist(), found.fence_id.tolist(), found.relation.tolist(), strict=True)
    for i, fence_id, relation in pairs:
        relations[i][fence_id] = Relation(relation)
    transitions: list[Transition] = []
    for fix, seen in zip(fixes, relations, strict=True):
        tracker = trackers.get(fix.caregiver_id)
        if tracker is None:
            tracker = trackers[fix.caregiver_id] = FenceTracker(fix.caregiver_id, config)
        segment = tracker.segment_to(fix)
        crossed = index.crossing(*segment) if segment is not None else set()
        transitions += tracker.update(fix, seen, crossed)
    return transitions
