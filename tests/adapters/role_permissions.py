"""What each role may send the gateway (:data:`MAY`): the attack matrix tries every frame of
every role against it, and the protocol's documentation is held to it."""

from __future__ import annotations

MAY: dict[str, set[str]] = {
    "caregiver": {"accept", "decline", "administration", "resume", "ping"},
    "family": {"resume", "ping"},
    "admin": {"resume", "ping"},
    "dispatcher": {
        "assign",
        "resolve",
        "acknowledge",
        "clear",
        "false_alarm",
        "open_incident",
        "resume",
        "ping",
    },
}
"""What each role may send; the rest is refused ``forbidden``. A caregiver's answer to an
offer that is not hers is refused too (``unknown_offer`` here: there is no such offer)."""
