"""When ``careknot up`` starts a crashed service again, and when it gives up (time passed in)."""

from __future__ import annotations

import random

import pytest

from careknot.restarts import RestartPolicy, RestartRecord, how_it_ended

QUICK_S = 0.5


def record(**policy: float) -> RestartRecord:
    return RestartRecord(RestartPolicy(**policy), random.Random(5))  # type: ignore[arg-type]


def test_quick_failures_wait_longer_each_time_and_give_up_at_the_limit() -> None:
    r = record(give_up_after=4, steady_after_s=10.0, first_wait_s=1.0, max_wait_s=30.0)
    waits = [r.exited(1, QUICK_S) for _ in range(3)]
    ceilings = [1.0, 2.0, 4.0]  # the backoff draws between half its ceiling and the ceiling
    for wait, ceiling in zip(waits, ceilings, strict=True):
        assert wait is not None and ceiling / 2 <= wait <= ceiling
    assert r.exited(1, QUICK_S) is None
    assert (r.failures, r.last_exit) == (4, 1)


def test_a_service_that_ran_long_enough_starts_its_count_and_backoff_again() -> None:
    r = record(give_up_after=3, steady_after_s=10.0, first_wait_s=1.0, max_wait_s=30.0)
    assert r.exited(-9, QUICK_S) is not None
    assert r.exited(-9, QUICK_S) is not None
    wait = r.exited(-9, 10.0)
    assert wait is not None and wait <= 1.0
    assert r.failures == 1
    assert r.exited(-9, QUICK_S) is not None
    assert r.exited(-9, QUICK_S) is None


def test_one_allowed_failure_gives_up_at_once() -> None:
    assert record(give_up_after=1).exited(0, 100.0) is None


def test_restarts_are_counted_in_the_state() -> None:
    r = record()
    r.exited(3, QUICK_S)
    r.restarted()
    assert r.as_state() == {"restarts": 1, "failures": 1, "last_exit": 3}


@pytest.mark.parametrize(
    ("status", "said"),
    [(3, "exited with status 3"), (0, "exited with status 0"), (-9, "was killed by SIGKILL")],
)
def test_how_a_service_ended_is_said_plainly(status: int, said: str) -> None:
    assert how_it_ended(status) == said


def test_a_policy_that_never_restarts_is_refused() -> None:
    with pytest.raises(ValueError, match="give_up_after"):
        RestartPolicy(give_up_after=0)
