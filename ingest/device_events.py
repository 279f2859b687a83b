"""Device events that act (a fall, an SOS, a dispenser's) to Kafka, tried again in place until
Kafka takes them (an ambient sensor's are packed with the home's activity, as fixes are:
``ingest.service``).

A fix Kafka does not take is counted and lost: the caregiver's next fix supersedes it. Nothing
supersedes a fall, so :func:`deliver` sends a device event again after the backoff's wait, each
failure logged, until Kafka has it or :data:`DEADLINE_S` has passed; only then does the event
count as failed, logged with its content. Meanwhile the event's batch is not acknowledged to
the MQTT broker and the device events behind it wait (on a connection of their own: positions
go on).

A batch's events are delivered at once, each device's in the order it sent them
(:func:`deliver_all`): one at a time, each waiting for Kafka's answer, a fall would wait behind
every dispenser's event before it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from adapters import kafka
from kernel import keys
from kernel.backoff import Backoff
from kernel.contracts import DeviceEvent
from kernel.errors import StorageError

log = logging.getLogger(__name__)

DEADLINE_S = 300.0
"""How long a device event is tried: well beyond a Kafka broker's restart, and each event
queued behind it waits as long again should Kafka stay away."""
RETRY_FIRST_S = 0.5
RETRY_CAP_S = 5.0


async def deliver_all(
    producer: kafka.Producer, events: list[DeviceEvent], *, deadline_s: float = DEADLINE_S
) -> list[tuple[DeviceEvent, StorageError]]:
    """Deliver ``events``, one device's after another in order, the devices at once; those
    not delivered, each with why: a device's first event given up on and every later one of it
    (so the broker, sending them again, keeps their order), and never an exception."""
    by_device: dict[str, list[DeviceEvent]] = {}
    for event in events:
        by_device.setdefault(event.device_id, []).append(event)
    failed: list[tuple[DeviceEvent, StorageError]] = []

    async def in_order(own: list[DeviceEvent]) -> None:
        for k, event in enumerate(own):
            try:
                await deliver(producer, event, deadline_s=deadline_s)
            except Exception as exc:  # given up, or a fault of ours: the broker sends it again
                if not isinstance(exc, StorageError):
                    log.exception("device event %s not delivered", event.event_id)
                    exc = StorageError(f"{type(exc).__name__}: {exc}")
                # the device's later events wait for it, so they come after it again
                failed.extend((later, exc) for later in own[k:])
                return

    await asyncio.gather(*(in_order(own) for own in by_device.values()))
    return failed


async def deliver(
    producer: kafka.Producer, event: DeviceEvent, *, deadline_s: float = DEADLINE_S
) -> None:
    """Send ``event`` and wait until Kafka has it, trying again after the backoff's wait;
    raises the last :class:`StorageError` once ``deadline_s`` has passed (the event logged)."""
    value = event.model_dump_json().encode()
    backoff = Backoff(RETRY_FIRST_S, RETRY_CAP_S)
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            await producer.send_and_wait(keys.DEVICE_EVENTS, value, key=event.device_id)
            return
        except StorageError as exc:
            if time.monotonic() >= deadline:
                log.error(
                    "device event %s of device %s given up after %.0f s",
                    event.event_id,
                    event.device_id,
                    deadline_s,
                )
                raise
            delay = backoff.next()
            log.warning("device event %s: %s; trying again in %.1f s", event.event_id, exc, delay)
            await asyncio.sleep(delay)
