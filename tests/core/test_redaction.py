"""No patient's data in logs or dead letters' details: a refused value is told by where and
why it was refused, never by what it held (the dead letter's payload keeps it, for replay)."""

from __future__ import annotations

import logging

import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError, field_validator

from adapters.metrics import DeadLetterMetrics
from kernel.contracts import DeviceEvent
from kernel.redact import validation_detail
from kernel.settings import Settings
from streams.dead_letters import DeadLetters, dead_letter
from streams.decoding import UNDECODABLE, Refused, decode_answer, decode_each

SECRET = "Edith Cresswell, 4 Larch Row"


def test_a_validation_detail_names_fields_and_reasons_not_values() -> None:
    class Note(BaseModel):
        seq: int
        text: str

        @field_validator("text")
        @classmethod
        def short(cls, text: str) -> str:
            raise ValueError(f"too long: {text}")

    with pytest.raises(ValidationError) as caught:
        Note.model_validate_json(orjson.dumps({"seq": SECRET, "text": SECRET}))
    assert SECRET in str(caught.value)  # what pydantic's own text would have leaked
    detail = validation_detail(caught.value)
    assert SECRET not in detail and "Edith" not in detail
    assert detail.startswith("Note: seq: Input should be a valid integer")
    assert "text: value_error" in detail


def test_a_refused_event_is_logged_and_dead_lettered_without_its_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    value = orjson.dumps({"event_id": "e1", "device_id": SECRET, "type": SECRET, "seq": SECRET})
    refused: list[Refused] = []
    with caplog.at_level(logging.DEBUG):
        assert decode_each(DeviceEvent, [value], refused) == []
    (r,) = refused
    assert r.reason == UNDECODABLE and "type" in r.detail
    assert "Edith" not in caplog.text and "Edith" not in r.detail
    letter = dead_letter(r, "ck.device-events", 0.0)
    assert "Edith" not in letter.detail
    assert SECRET in letter.payload  # kept to be replayed once the cause is fixed


def test_a_refused_answer_is_logged_without_its_values(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        r = decode_answer(orjson.dumps({"answer_id": SECRET, "answer": SECRET}))
    assert isinstance(r, Refused)
    assert "Edith" not in caplog.text and "Edith" not in r.detail
    assert "undecodable" in caplog.text


async def test_a_dead_letter_kafka_did_not_take_is_logged_without_its_payload(
    caplog: pytest.LogCaptureFixture,
) -> None:
    letters = DeadLetters(Settings(), DeadLetterMetrics(CollectorRegistry()))  # no producer
    refused = Refused(orjson.dumps({"name": SECRET}), UNDECODABLE, "name: missing")
    with caplog.at_level(logging.DEBUG):
        await letters.park("device-events", [refused])
    assert "dead letter not produced" in caplog.text
    assert UNDECODABLE in caplog.text
    assert "Edith" not in caplog.text
