"""What the agents decode from Kafka, and what they refuse with a machine-readable reason
(to be dead-lettered): a value that is not JSON of the expected shape, or no value at all."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from kernel.contracts import ANSWERS_AND_COMMANDS, AnswerOrCommand
from kernel.redact import validation_detail

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
UNDECODABLE = "undecodable"
"""The reason for a Kafka value that is not JSON of the expected shape."""
TOMBSTONE = "tombstone"
"""The reason for a Kafka message with no value at all."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A Kafka value not taken, and why: ``reason`` a machine-readable code, ``detail`` the
    validation error."""

    value: bytes | None
    reason: str
    detail: str = ""


@dataclass(slots=True)
class Decoded(Generic[M]):
    """Kafka values split into those decoded and those refused, each in order."""

    taken: list[M] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


def decode_split(model: type[M], values: Iterable[bytes | None]) -> Decoded[M]:
    """The values that decode as ``model``, and the others (``None`` among them) refused."""
    out: Decoded[M] = Decoded()
    for value in values:
        if value is None:
            out.refused.append(Refused(None, TOMBSTONE))
            continue
        try:
            out.taken.append(model.model_validate_json(value))
        except ValidationError as exc:
            out.refused.append(Refused(value, UNDECODABLE, validation_detail(exc)))
    return out


def decode_each(
    model: type[M], values: Iterable[bytes | None], refused: list[Refused] | None = None
) -> list[M]:
    """The values that decode as ``model``; the others are logged and, given ``refused``,
    added to it."""
    decoded = decode_split(model, values)
    for r in decoded.refused:
        log.error("%s %s on Kafka: %s", r.reason, model.__name__, r.detail)
    if refused is not None:
        refused += decoded.refused
    return decoded.taken


def decode_packed(
    model: type[M],
    packed: TypeAdapter[list[M]],
    values: Iterable[bytes | None],
    refused: list[Refused] | None = None,
) -> list[M]:
    """The records of messages each holding a JSON array of ``model`` (as ingest packs fixes
    and telemetry samples) or one record, in order (``packed`` reads a whole array at once);
    one that does not decode is logged and dropped (added to ``refused`` when given), and its
    neighbours are kept."""
    out: list[M] = []
    for value in values:
        if value is None or not value.startswith(b"["):
            out += decode_each(model, [value], refused)
            continue
        try:
            out += packed.validate_json(value)
        except ValidationError:
            out += _decode_items(model, value, refused)
    return out


def _decode_items(model: type[M], value: bytes, refused: list[Refused] | None) -> list[M]:
    try:
        items = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        log.error("undecodable batch of %s on Kafka: %s", model.__name__, exc)
        if refused is not None:
            refused.append(Refused(value, UNDECODABLE, str(exc)))
        return []
    if not isinstance(items, list):
        items = [items]
    return decode_each(model, [orjson.dumps(item) for item in items], refused)


def decode_answer(value: bytes | None) -> AnswerOrCommand | Refused:
    """A caregiver's answer or a dispatcher's command from the offer-answers topic, told apart
    by their fields (never by what a free-text field says), or what it is refused as."""
    if value is None:
        return Refused(None, TOMBSTONE)
    try:
        return ANSWERS_AND_COMMANDS.validate_json(value)
    except ValidationError as exc:
        detail = validation_detail(exc)
        log.error("%s answer or command on Kafka: %s", UNDECODABLE, detail)
        return Refused(value, UNDECODABLE, detail)
