"""``careknot bench anomaly`` walks each home forward: every model is fitted on the days before
the day it scores, and scores that day every 5 minutes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import pytest

from careknot.bench import anomaly
from routines.features import Timeline
from routines.models import Detection, FalseAlarm, RoutineModel
from simulators.residents import simulate_home


@dataclass
class Spy:
    name: str = "spy"
    until: float | None = None
    seen_up_to: float = float("-inf")
    scored: list[tuple[float, float]] = field(default_factory=list)

    def fit(self, history: Timeline, until: float, false_alarms: Sequence[FalseAlarm] = ()) -> None:
        self.until = until

    def score(self, tl: Timeline, now: float) -> list[Detection]:
        assert self.until is not None
        self.scored.append((self.until, now))
        return [Detection("inactivity", self.until, "a day scored")]


def test_each_day_is_scored_every_five_minutes_by_models_fitted_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spies: dict[str, Spy] = {}

    def models() -> dict[str, RoutineModel]:
        spies.update({name: Spy(name) for name in anomaly.MODELS})
        return dict(spies)

    monkeypatch.setattr(anomaly, "_models", models)
    history = simulate_home(3, 17, 5, anomaly.START)
    raised, home_days, _, _ = anomaly.walk(history, learn_days=14)
    scored = spies["baseline"].scored
    assert all(until <= now < until + 25 * 3600 for until, now in scored)
    assert all(b - a == 300.0 for (_, a), (_, b) in pairwise(scored) if b - a < 3600)
    days = sorted({until for until, _ in scored})
    assert len(days) == 3  # days 14, 15 and 16 of 17; the first 14 only learnt from
    assert [a.start for a in raised["lof"]] == days  # one alarm a kind and start
    assert home_days == pytest.approx(len(scored) * 300 / 86_400)
