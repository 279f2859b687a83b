"""Caregivers' answers to offers, from a WebSocket frame to Kafka.

:class:`AnswerDesk` reads the offer record the dispatcher wrote
(:mod:`adapters.storage.offer_records`), lets :func:`ws_gateway.session.decide_answer`
judge, and produces an :class:`~kernel.contracts.OfferAnswer` to ``{ns}.offer-answers`` keyed
by incident, or a :class:`~kernel.contracts.DeadLetter` to ``{ns}.deadletter`` for a refused
answer.
"""

from __future__ import annotations

import time
import uuid

import orjson

from adapters.kafka import Producer
from adapters.storage.offer_records import OfferRecords
from kernel import keys
from kernel.contracts import DeadLetter, OfferAnswer
from kernel.errors import RejectedInput
from kernel.tokens import Claims
from ws_gateway.session import Answer, decide_answer

DEADLETTER_PAYLOAD_CHARS = 2048


class AnswerDesk:
    """Checks answers against offer records and forwards them; one per gateway process."""

    def __init__(self, records: OfferRecords, producer: Producer) -> None:
        self._records = records
        self._producer = producer

    async def forward(self, claims: Claims, answer: Answer) -> OfferAnswer:
        """Produce the answer and wait for the broker; raises ``RejectedAnswer`` when refused,
        ``StorageError`` when Redis or Kafka fails."""
        offer = await self._records.fields(answer.offer_id) if claims.role == "caregiver" else {}
        event = decide_answer(claims, answer, offer, answer_id=uuid.uuid4().hex, now=time.time())
        await self._producer.send_and_wait(
            keys.OFFER_ANSWERS,
            orjson.dumps(event.model_dump(mode="json")),
            key=event.incident_id,
        )
        return event

    async def dead_letter(
        self, rejection: RejectedInput, source: str, payload: str | bytes
    ) -> None:
        """Record a refused answer on the dead-letter topic."""
        text = payload.decode(errors="replace") if isinstance(payload, bytes) else payload
        letter = DeadLetter(
            reason=rejection.reason,
            detail=rejection.detail,
            source=source,
            payload=text[:DEADLETTER_PAYLOAD_CHARS],
            received_at=time.time(),
        )
        await self._producer.send_and_wait(
            keys.DEADLETTER, orjson.dumps(letter.model_dump(mode="json"))
        )
