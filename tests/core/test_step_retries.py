"""How an agent's step is retried (``streams.handling.with_retries``): while a server is away,
until it is back; a poison event parked within seconds. The clock and the sleep are the test's:
no time passes."""

from __future__ import annotations

import asyncpg
import pytest

from kernel.errors import StorageError
from streams.handling import OUTAGE_PATIENCE_S, POISON_WITHIN_S, with_retries


class Time:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class Step:
    """Fails with ``errors`` in turn, then gives ``done``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.tries = 0

    async def __call__(self) -> str:
        self.tries += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def outage() -> StorageError:
    try:
        raise ConnectionRefusedError(111, "Connect call failed")
    except OSError as exc:
        try:
            raise StorageError("postgres: away") from exc
        except StorageError as wrapped:
            return wrapped


async def run(step: Step, clock: Time) -> tuple[str | None, list[tuple[str, str]]]:
    parked: list[tuple[str, str]] = []

    async def park(reason: str, detail: str) -> None:
        parked.append((reason, detail))

    got = await with_retries("ev-1", step, park, clock=clock, sleep=clock.sleep)
    return got, parked


async def test_a_step_failing_while_a_server_is_away_is_retried_until_it_is_back() -> None:
    clock = Time()
    step = Step(*[outage() for _ in range(60)], asyncpg.CannotConnectNowError("starting"))
    got, parked = await run(step, clock)
    assert (got, parked, step.tries) == ("done", [], 62)
    assert POISON_WITHIN_S < clock.now < OUTAGE_PATIENCE_S


async def test_a_poison_event_is_parked_within_seconds() -> None:
    clock = Time()
    step = Step(*[ValueError("a bug") for _ in range(1000)])
    got, parked = await run(step, clock)
    assert got is None
    assert parked == [("poison", "ValueError: a bug")]
    assert clock.now == pytest.approx(POISON_WITHIN_S)  # the last wait ends at the deadline


@pytest.mark.parametrize(
    "error",
    [StorageError("transaction failed"), asyncpg.UniqueViolationError("duplicate")],
    ids=["storage error with no cause", "a constraint"],
)
async def test_what_no_wait_mends_is_poison_unless_it_names_a_server(error: Exception) -> None:
    clock = Time()
    got, parked = await run(Step(*[error] * 1000), clock)
    assert got is None
    wait = OUTAGE_PATIENCE_S if isinstance(error, StorageError) else POISON_WITHIN_S
    assert [reason for reason, _ in parked] == ["outage" if wait > 5 else "poison"]
    assert clock.now == pytest.approx(wait)


async def test_an_outage_that_outlasts_the_patience_parks_the_event_as_an_outage() -> None:
    clock = Time()
    got, parked = await run(Step(*[outage() for _ in range(10_000)]), clock)
    assert got is None
    assert [reason for reason, _ in parked] == ["outage"]
    assert clock.now == pytest.approx(OUTAGE_PATIENCE_S)


def test_which_failures_pass() -> None:
    from redis.exceptions import ReadOnlyError

    from adapters.faults import passing

    class ClientSideDataError(asyncpg.InterfaceError, ValueError):
        """As asyncpg's own: bad input for a query argument, caught before the server."""

    assert passing(outage())
    assert passing(ReadOnlyError("READONLY You can't write against a read only replica."))
    assert passing(asyncpg.exceptions.ReadOnlySQLTransactionError("read-only transaction"))
    assert not passing(ClientSideDataError("invalid input for query argument $1"))
    assert not passing(asyncpg.UniqueViolationError("duplicate"))
    assert not passing(KeyError("a bug"))
