"""Which failures are a server's, and worth waiting out: the one place that knows the client
libraries' exceptions for it.

A step that fails because Postgres, Redis, Kafka or the MQTT broker is down, restarting or
unreachable will succeed once it is back, so the agents retry it for as long as an outage may
last; any other failure (a bug, input no retry will fix) is a poison message, parked within
seconds so the events behind it keep flowing (:mod:`streams.handling`).
"""

from __future__ import annotations

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kernel.errors import StorageError

_NEVER: tuple[type[BaseException], ...] = (ValueError, TypeError)
"""Never a server's, whatever else they are: asyncpg's client-side "invalid input for query
argument" is an ``InterfaceError`` and a ``ValueError`` at once, and a bug."""

_PASSING: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.InterfaceError,  # the connection was closed under a query
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutting down, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # class 53
    asyncpg.exceptions.TransactionRollbackError,  # class 40: serialization, deadlock
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # a replica, until the failover ends
    RedisConnectionError,  # and BusyLoadingError, a Redis loading its data
    RedisTimeoutError,
    ReadOnlyError,  # a replica, until the failover ends
    OutOfMemoryError,  # maxmemory reached: until memory is freed
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
)


def passing(exc: BaseException) -> bool:
    """True when ``exc`` says a server failed in a way that passes: down, restarting,
    unreachable, overloaded. A :class:`StorageError` is judged by its cause, if it has one."""
    if isinstance(exc, StorageError):
        cause = exc.__cause__
        return cause is None or (passing(cause) if cause is not exc else False)
    return isinstance(exc, _PASSING) and not isinstance(exc, _NEVER)
