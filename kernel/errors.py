"""The one exception root of CareKnot and its children.

    CareKnotError
    ├── ConfigError               settings that cannot work
    ├── RejectedInput             input refused with a machine-readable ``reason``
    │   ├── RejectedPayload       an MQTT payload (``topic``)
    │   └── RejectedAnswer        a caregiver's answer to an offer (``offer_id``)
    ├── AuthError                 a token that is missing, forged, expired or out of scope
    ├── StorageError              a server (Postgres, Redis, Kafka, MQTT) failed or refused
    │   │                         (``raise ... from exc`` at the adapter)
    │   └── BrokerUnavailable     the MQTT broker cannot be reached, or the connection is lost
    └── ServerStartError          an embedded server would not start (``server``)

Library errors are translated at the edge; the core raises only these.
"""

from __future__ import annotations


class CareKnotError(Exception):
    """Root of every error CareKnot raises on purpose."""


class ConfigError(CareKnotError):
    """Settings that cannot work."""


class RejectedInput(CareKnotError):
    """Input refused; ``reason`` is a stable, machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class RejectedPayload(RejectedInput):
    """An MQTT payload that cannot enter the system."""

    def __init__(self, reason: str, detail: str = "", *, topic: str = "") -> None:
        super().__init__(reason, detail)
        self.topic = topic


class RejectedAnswer(RejectedInput):
    """A caregiver's answer to an offer that cannot be taken."""

    def __init__(self, reason: str, detail: str = "", *, offer_id: str = "") -> None:
        super().__init__(reason, detail)
        self.offer_id = offer_id


class AuthError(CareKnotError):
    """A token that is missing, forged, expired or out of scope."""


class StorageError(CareKnotError):
    """A server the adapters talk to (Postgres, Redis, Kafka, an MQTT broker) failed or refused."""


class BrokerUnavailable(StorageError):
    """The MQTT broker cannot be reached, or the connection to it is lost."""


class ServerStartError(CareKnotError):
    """An embedded server would not start."""

    def __init__(self, server: str, detail: str) -> None:
        super().__init__(f"{server}: {detail}")
        self.server = server
