"""Helpers for tests that talk to the system the way a device and a person would."""

from __future__ import annotations

import socket

from careknot.waiting import poll_until as wait_for
from simulators.phone import Frame, Phone, is_type, token

__all__ = ["Frame", "Phone", "free_port", "is_type", "token", "wait_for"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
