"""When ``careknot up`` starts a crashed service again, and when it gives up.

A service that exits on its own is started again after the one backoff's wait
(:class:`kernel.backoff.Backoff`). Its failures are counted in a row: one that ran at least
``steady_after_s`` before it failed starts the count and the backoff again, so only quick
failures add up; at ``give_up_after`` in a row ``careknot up`` stops everything. Time is
passed in, so these rules are tested without processes.
"""

from __future__ import annotations

import random
import signal
from dataclasses import dataclass

from kernel.backoff import Backoff


@dataclass(frozen=True)
class RestartPolicy:
    """How crashed services are started again."""

    give_up_after: int = 5
    """Failures in a row (each within ``steady_after_s`` of its start) before stopping all."""
    steady_after_s: float = 30.0
    """A service that ran this long before failing counts its failures from one again."""
    first_wait_s: float = 1.0
    max_wait_s: float = 30.0

    def __post_init__(self) -> None:
        if self.give_up_after < 1:
            raise ValueError("give_up_after must be at least 1")
        if self.steady_after_s <= 0:
            raise ValueError("steady_after_s must be positive")


class RestartRecord:
    """One service's restarts: how many in all, its failures in a row, its last exit."""

    def __init__(self, policy: RestartPolicy, rng: random.Random | None = None) -> None:
        self._policy = policy
        self._backoff = Backoff(policy.first_wait_s, policy.max_wait_s, rng)
        self.restarts = 0
        self.failures = 0
        self.last_exit: int | None = None

    def exited(self, status: int, ran_s: float) -> float | None:
        """The service exited with ``status`` after running ``ran_s`` seconds: the wait before
        starting it again, or None when it failed too often in a row (give up)."""
        self.last_exit = status
        if ran_s >= self._policy.steady_after_s:
            self.failures = 0
            self._backoff.reset()
        self.failures += 1
        if self.failures >= self._policy.give_up_after:
            return None
        return self._backoff.next()

    def restarted(self) -> None:
        self.restarts += 1

    def as_state(self) -> dict[str, int | None]:
        return {"restarts": self.restarts, "failures": self.failures, "last_exit": self.last_exit}


def how_it_ended(status: int) -> str:
    """``exited with status 3`` or ``was killed by SIGKILL`` (Popen's negative status)."""
    if status >= 0:
        return f"exited with status {status}"
    try:
        return f"was killed by {signal.Signals(-status).name}"
    except ValueError:
        return f"was killed by signal {-status}"
