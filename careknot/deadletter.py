"""``careknot deadletter list|show|replay``: what the services refused, read and sent again.

The namespace's dead-letter topic is read whole, from its first record: it holds what was
refused, not the stream, so it stays small. A letter is named by where it lies,
``PARTITION:OFFSET`` (a bare offset will do where only one partition has it).

``replay`` produces a letter's payload back onto the Kafka topic it came from, keyed as the
services key that topic and with a header naming the letter (:data:`REPLAY_HEADER`), so the
worker takes it again once what made it fail is fixed. A second replay of one letter changes
nothing downstream (device events are deduplicated by ``event_id``, answers by their offer's
state, fixes by caregiver and time), and every replay is recorded on the dead-letter topic
itself (reason ``replayed``, ``replay_of`` the letter), so ``list`` and ``show`` say how often
a letter was replayed and ``replay --reason`` skips the letters replayed already.

Refused: a letter whose payload was cut short (``truncated``, or, in letters from before that
was recorded, a payload as long as the producers cut to) or holds bytes that were not UTF-8
(replaced when it was made text), a tombstone (no value to send), and what ingest refused at
the MQTT edge (its device must publish it again).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from adapters import kafka
from ingest.parse import DEAD_LETTER_PAYLOAD_CHARS as INGEST_PAYLOAD_CHARS
from kernel import keys
from kernel.contracts import DeadLetter
from kernel.errors import StorageError
from kernel.redact import validation_detail
from kernel.settings import Settings
from streams.dead_letters import PAYLOAD_CHARS as WORKER_PAYLOAD_CHARS
from streams.decoding import TOMBSTONE

log = logging.getLogger(__name__)

REPLAYED = "replayed"
"""The reason of a replay's record on the dead-letter topic."""
REPLAY_HEADER = "careknot-replay-of"
"""The Kafka header of a replayed value: ``{dead-letter topic}:{PARTITION}:{OFFSET}``."""
CUT_AT_LEAST = min(INGEST_PAYLOAD_CHARS, WORKER_PAYLOAD_CHARS)
"""A payload this long (in UTF-8) may have been cut, where the letter does not say."""
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    keys.DEVICE_EVENTS: ("device_id",),
    keys.DEVICE_STATUS: ("device_id",),
    keys.TELEMETRY: ("device_id",),
    keys.HOME_ACTIVITY: ("device_id",),
    # answers and dispatchers' commands by incident, alarm commands by alarm, caregivers'
    # medication log entries by patient
    keys.OFFER_ANSWERS: ("incident_id", "alarm_id", "patient_id"),
    keys.PRESENCE: ("caregiver_id",),
    keys.FIXES: ("caregiver_id",),  # the partition ingest packs her fixes into
}
"""The fields of a topic's values the services key its messages by: the first a value has."""
NOT_TEXT = "\ufffd"
"""What the producers put for bytes that are not UTF-8 when they make a payload text."""
READ_WITHIN_S = 30.0
DETAIL_CHARS = 60


class LetterId(NamedTuple):
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"


class ReplayRecord(DeadLetter):
    """A replay, recorded on the dead-letter topic beside the letters (readable as a letter
    whose reason is ``replayed``): ``replay_of`` names the letter sent again."""

    replay_of: str


@dataclass
class Letter:
    """A dead letter where it lies, and when it was replayed."""

    id: LetterId
    letter: DeadLetter
    replays: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "letter": str(self.id),
            **self.letter.model_dump(mode="json"),
            "replays": self.replays,
        }


# ------------------------------------------------------------------ reading


async def read_letters(settings: Settings) -> list[Letter]:
    """Every letter of the namespace's dead-letter topic, oldest first, with its replays."""
    letters: dict[LetterId, Letter] = {}
    replays: list[ReplayRecord] = []
    for record in await records(settings, settings.keys.topic(keys.DEADLETTER)):
        letter_id = LetterId(record.partition, record.offset)
        decoded = _decode(letter_id, record.value)
        if isinstance(decoded, ReplayRecord):
            replays.append(decoded)
        elif decoded is not None:
            letters[letter_id] = Letter(letter_id, decoded)
    by_name = {str(letter_id): letter for letter_id, letter in letters.items()}
    for replay in replays:
        if (replayed := by_name.get(replay.replay_of)) is not None:
            replayed.replays.append(replay.received_at)
    return sorted(letters.values(), key=lambda x: (x.letter.received_at, x.id))


def _decode(letter_id: LetterId, value: bytes | None) -> DeadLetter | None:
    try:
        raw = orjson.loads(value or b"")
        if isinstance(raw, dict) and raw.get("reason") == REPLAYED and "replay_of" in raw:
            return ReplayRecord.model_validate(raw)
        return DeadLetter.model_validate(raw)
    except orjson.JSONDecodeError as exc:
        log.warning("record %s of the dead-letter topic is no dead letter: %s", letter_id, exc)
        return None
    except ValidationError as exc:
        why = validation_detail(exc)
        log.warning("record %s of the dead-letter topic is no dead letter: %s", letter_id, why)
        return None


async def records(settings: Settings, topic: str) -> list[ConsumerRecord]:
    """Every record ``topic`` holds now, read from its first."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # a reset racing the seeks below lands there too
    )
    await consumer.start()
    try:
        await consumer.topics()  # the cluster's metadata, so the topic's partitions are known
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        for tp, first in (await consumer.beginning_offsets(tps)).items():
            consumer.seek(tp, first)
        return await _read_to(consumer, ends)
    finally:
        await consumer.stop()


async def _read_to(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]
) -> list[ConsumerRecord]:
    """The assigned partitions' records up to their ``ends``."""
    found: list[ConsumerRecord] = []
    deadline = time.monotonic() + READ_WITHIN_S
    while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
        if time.monotonic() > deadline:
            raise StorageError(f"kafka: {list(ends)} not read to their ends in {READ_WITHIN_S} s")
        for tp, batch in (await consumer.getmany(*ends, timeout_ms=200)).items():
            found.extend(r for r in batch if r.offset < ends[tp])
    return found


def find(letters: Sequence[Letter], name: str) -> Letter:
    """The letter ``name`` (``PARTITION:OFFSET``, or an offset only one partition has);
    LookupError with what is wrong."""
    partition, _, offset = name.rpartition(":")
    if not offset.isdigit() or not (partition.isdigit() or partition == ""):
        raise LookupError(f"{name}: a letter is PARTITION:OFFSET, as list shows it")
    found = [
        x
        for x in letters
        if x.id.offset == int(offset) and (partition == "" or x.id.partition == int(partition))
    ]
    if len(found) > 1:
        raise LookupError(f"{name}: letters {', '.join(str(x.id) for x in found)}: which one?")
    if not found:
        raise LookupError(f"{name}: no such letter")
    return found[0]


# ------------------------------------------------------------------ list and show


def selected(
    letters: Iterable[Letter], settings: Settings, reason: str | None, source: str | None
) -> list[Letter]:
    """The letters of ``reason`` and from ``source`` (a topic's full or logical name)."""
    sources = None if source is None else {source, settings.keys.topic(source)}
    return [
        x
        for x in letters
        if (reason is None or x.letter.reason == reason)
        and (sources is None or x.letter.source in sources)
    ]


def row(x: Letter) -> str:
    """One line of ``list``: letter, time, reason, source, the detail's start, and flags."""
    at = datetime.fromtimestamp(x.letter.received_at, UTC).isoformat(timespec="seconds")
    detail = " ".join(x.letter.detail.split())
    short = detail if len(detail) <= DETAIL_CHARS else detail[: DETAIL_CHARS - 1] + "…"
    flags = (["truncated"] if may_be_cut(x.letter) else []) + (
        [f"replayed {len(x.replays)}x"] if x.replays else []
    )
    marks = f"  [{', '.join(flags)}]" if flags else ""
    return f"{x.id!s:>9}  {at}  {x.letter.reason:<16} {x.letter.source:<24} {short}{marks}"


def listing(letters: Sequence[Letter], limit: int) -> str:
    """The latest ``limit`` letters, oldest first, a line each."""
    shown = letters[-limit:] if limit > 0 else []
    header = f"{'LETTER':>9}  {'TIME (UTC)':<25}  {'REASON':<16} {'SOURCE':<24} DETAIL"
    more = len(letters) - len(shown)
    tail = [f"({more} older not shown: --limit)"] if more else []
    return "\n".join([header, *map(row, shown), *tail])


def pretty(x: Letter) -> str:
    """A letter whole, as indented JSON."""
    return json.dumps(x.as_json(), indent=2, ensure_ascii=False)


# ------------------------------------------------------------------ replay


def may_be_cut(letter: DeadLetter) -> bool:
    """Whether the payload may lack the end of the value that was refused."""
    if letter.truncated is not None:
        return letter.truncated
    return len(letter.payload.encode()) >= CUT_AT_LEAST


def kafka_source(letter: DeadLetter, settings: Settings) -> str | None:
    """The logical name of the namespace's topic a letter came from; None for what came from
    elsewhere (an MQTT topic, another namespace)."""
    prefix = settings.keys.topic("")
    name = letter.source.removeprefix(prefix)
    known = letter.source.startswith(prefix) and name in keys.TOPICS
    return name if known and name != keys.DEADLETTER else None


def why_not(x: Letter, settings: Settings) -> str | None:
    """Why a letter cannot be replayed, or None when it can."""
    letter = x.letter
    if kafka_source(letter, settings) is None:
        return (
            f"it came from {letter.source}, not from a Kafka topic of namespace"
            f" {settings.namespace}: ingest refused it at the edge, and only its device can"
            " send it again"
        )
    if letter.reason == TOMBSTONE or not letter.payload:
        return "it is a tombstone: there is no value to send again"
    if may_be_cut(letter):
        return (
            f"its payload was cut short when it was dead-lettered ({len(letter.payload)}"
            " characters kept): sending it would not be the value that was refused"
        )
    if NOT_TEXT in letter.payload:
        return (
            "its payload stands in for bytes that were not UTF-8 (replaced when it was"
            " dead-lettered): sending it would not be the value that was refused"
        )
    return None


def message_key(topic: str, payload: str) -> str | None:
    """What the services key ``topic``'s messages by, read from the value (its first item, for
    a batch); None where the value does not say."""
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, list) and value:
        value = value[0]
    if not isinstance(value, dict):
        return None
    found = [value.get(f) for f in KEY_FIELDS.get(topic, ()) if isinstance(value.get(f), str)]
    return found[0] if found else None


class Replayer:
    """Sends letters again and records each replay on the dead-letter topic."""

    def __init__(self, settings: Settings, producer: kafka.Producer) -> None:
        self._settings = settings
        self._producer = producer

    async def replay(self, x: Letter) -> str:
        """Send one letter again (its refusal raises :class:`ValueError`); what was done."""
        refusal = why_not(x, self._settings)
        topic = kafka_source(x.letter, self._settings)
        if refusal is not None or topic is None:
            raise ValueError(f"{x.id}: not replayed: {refusal}")
        mark = f"{self._settings.keys.topic(keys.DEADLETTER)}:{x.id}"
        await self._producer.send_and_wait(
            topic,
            x.letter.payload.encode(),
            key=message_key(topic, x.letter.payload),
            headers=[(REPLAY_HEADER, mark.encode())],
        )
        await self._record(x)
        before = f" (replayed {len(x.replays)} times before)" if x.replays else ""
        x.replays.append(time.time())
        return f"{x.id}: sent again to {x.letter.source}{before}"

    async def _record(self, x: Letter) -> None:
        record = ReplayRecord(
            reason=REPLAYED,
            detail=f"letter {x.id} sent again to {x.letter.source}",
            source=x.letter.source,
            payload="",
            received_at=time.time(),
            truncated=False,
            replay_of=str(x.id),
        )
        value = orjson.dumps(record.model_dump(mode="json"))
        await self._producer.send_and_wait(keys.DEADLETTER, value, key=REPLAYED)


def to_replay(letters: Sequence[Letter], names: Sequence[str], reason: str | None) -> list[Letter]:
    """The letters named (LookupError for one that is not there), or those of ``reason`` not
    replayed yet."""
    if names:
        return [find(letters, name) for name in names]
    return [x for x in letters if x.letter.reason == reason and not x.replays]


async def replay(settings: Settings, chosen: Sequence[Letter]) -> tuple[list[str], list[str]]:
    """Send ``chosen`` again: what was sent, and what was refused and why."""
    done: list[str] = []
    refused: list[str] = []
    producer = kafka.Producer(settings)
    await producer.start()
    try:
        replayer = Replayer(settings, producer)
        for x in chosen:
            try:
                done.append(await replayer.replay(x))
            except ValueError as exc:
                refused.append(str(exc))
    finally:
        await producer.stop()
    return done, refused


# ------------------------------------------------------------------ the command


async def run(settings: Settings, args: argparse.Namespace) -> int:
    """``careknot deadletter ACTION``: prints what it found or did; 1 if anything was
    refused or not found."""
    letters = await read_letters(settings)
    if args.action == "list":
        print(listing(selected(letters, settings, args.reason, args.source), args.limit))
        return 0
    try:
        if args.action == "show":
            print(pretty(find(letters, args.letter)))
            return 0
        chosen = to_replay(letters, args.letters, args.reason)
    except LookupError as exc:
        print(exc)
        return 1
    done, refused = await replay(settings, chosen)
    for line in [*done, *refused] or [f"no letter of reason {args.reason} to replay"]:
        print(line)
    return 1 if refused else 0
