"""The one backoff: how long to wait before trying a failed server again.

Capped exponential growth with jitter, as reconnecting clients use (aiomqtt, redis-py): each
wait is drawn between half the ceiling and the ceiling, and the ceiling doubles up to ``cap``,
so many clients that lost the same server do not come back at the same instant. ``reset()``
once a try succeeds. Random draws come from the ``rng`` given, so a test can fix them, else from
one generator shared by every backoff: a backoff is made for every step that might fail (each
device event ingest sends, each event an agent handles), and seeding a generator of its own
each time cost more than the step.
"""

from __future__ import annotations

import random

_JITTER = random.Random()


class Backoff:
    """``next()`` gives the next wait in seconds; ``reset()`` after a success."""

    def __init__(
        self, first: float = 0.5, cap: float = 30.0, rng: random.Random | None = None
    ) -> None:
        if not 0 < first <= cap:
            raise ValueError("backoff needs 0 < first <= cap")
        self._first, self._cap = first, cap
        self._rng = rng if rng is not None else _JITTER
        self._ceiling = first

    def next(self) -> float:
        delay = self._rng.uniform(self._ceiling / 2, self._ceiling)
        self._ceiling = min(self._cap, self._ceiling * 2)
        return delay

    def reset(self) -> None:
        self._ceiling = self._first
