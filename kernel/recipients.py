"""Who a message to WebSocket clients is for: one caregiver, one patient's family, or one
agency's dispatchers.

A recipient's name keys its outbox (:mod:`kernel.keys`) and is what a gateway connection reads
(one recipient per connection), so writers and the gateway must spell it alike: here.
"""

from __future__ import annotations


def caregiver(caregiver_id: str) -> str:
    return f"cg:{caregiver_id}"


def family_of(agency_id: str, patient_id: str) -> str:
    """A patient's family, within her agency: a token of another agency naming her reads a
    channel nobody writes to."""
    return f"patient:{agency_id}:{patient_id}"


def dispatchers(agency_id: str) -> str:
    return f"agency:{agency_id}"
