"""One client's conversation with the gateway, once its WebSocket is open: authentication
(an ``Authorization: Bearer`` header or a first ``auth`` frame, never the URL, which proxies and
logs keep), ``hello``, the replay of what it missed, the live messages the relay queued for it,
and the frames it sends (pings, resumes, caregivers' answers and medication log entries,
dispatchers' commands), each answered or refused.

Its token is watched while it is open: when it expires, or its holder's tokens are revoked
(checked every :data:`TOKEN_CHECK_S`), the connection is closed (4401) unless the client sent a
fresh token of the same person in an ``auth`` frame first (answered ``auth_ok``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Literal

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from adapters.kafka import Producer
from adapters.storage.relay import GatewayConnection
from kernel import keys, tokens
from kernel.commands import key_of
from kernel.contracts import AlarmCommand, DispatcherCommand
from kernel.errors import AuthError, CareKnotError, RejectedAnswer, RejectedInput, StorageError
from kernel.settings import Settings
from kernel.tokens import Claims
from ws_gateway.answers import AnswerDesk
from ws_gateway.connection import (
    CATCH_UP,
    CLOSE_INTERNAL_ERROR,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORISED,
    Connection,
    in_background,
)
from ws_gateway.limits import RATE_LIMITED, FrameBudget, FrameLimits, OverBudget
from ws_gateway.session import (
    FORBIDDEN,
    MALFORMED,
    PONG,
    TOO_LARGE,
    UNAUTHORISED,
    Administer,
    AlarmHand,
    Answer,
    Assign,
    Auth,
    Counters,
    Delivered,
    Frame,
    Ping,
    Resolve,
    Resume,
    access_record,
    ack_frame,
    administration_ack_frame,
    auth_ok_frame,
    command_ack_frame,
    decide_administration,
    decide_alarm_hand,
    decide_command,
    error_frame,
    hello_frame,
    parse_frame,
    reads_the_same,
    resync_frame,
    seq_of,
)

log = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 5.0
TOKEN_CHECK_S = 30.0
"""How often an open connection's holder is checked for a revocation."""
UNAVAILABLE = "unavailable"


class Conversations:
    """What the gateway says to each client and does with what it says; one per gateway."""

    def __init__(
        self, settings: Settings, redis: GatewayConnection, producer: Producer, counters: Counters
    ) -> None:
        self._settings, self._producer, self._counters = settings, producer, counters
        self._ring = tokens.require_keyring(settings)
        self._revocations = redis.revocations(settings.keys)
        self._outbox = redis.outbox(settings)
        self._answers = AnswerDesk(redis.offer_records(settings.keys), producer)
        self._limits = FrameLimits(settings.gateway_frame_rate, settings.gateway_frame_burst)

    async def authenticate(self, ws: ServerConnection, token: str | None) -> Claims:
        if token is None:
            try:
                first = await asyncio.wait_for(ws.recv(), AUTH_TIMEOUT_S)
                command = parse_frame(first)
            except TimeoutError as exc:
                raise AuthError(f"no token within {AUTH_TIMEOUT_S:g} s") from exc
            except RejectedInput as exc:
                raise AuthError(f"first frame: {exc}") from exc
            if not isinstance(command, Auth):
                raise AuthError("the first frame must be auth")
            token = command.token
        claims = tokens.verify(token, self._ring, time.time())
        await self._revocations.still_good(claims, time.time())
        return claims

    async def refuse(self, ws: ServerConnection, rejection: RejectedInput, code: int) -> None:
        self._counters.rejected[rejection.reason] += 1
        with contextlib.suppress(ConnectionClosed):
            await ws.send(error_frame(rejection), text=True)
            await ws.close(code, rejection.reason)

    async def converse(
        self, conn: Connection, last_seq: str | None, epoch: str | None = None
    ) -> None:
        position = await self._outbox.position(conn.recipient)
        conn.epoch = position.epoch
        # not kept in a local: orjson's output holds a 4 KiB buffer for as long as it lives
        await conn.ws.send(
            hello_frame(conn.claims, conn.recipient, position.seq, position.epoch), text=True
        )
        if last_seq is not None and last_seq.isdigit():
            given = int(epoch) if epoch is not None and epoch.isdigit() else None
            await self._resume(conn, int(last_seq), given)
        self._check_token_later(conn)
        conn.open = True
        if conn.queue:
            self.pump(conn)
        try:
            await self._listen(conn)
        finally:
            conn.stop_queueing()
            if conn.pump is not None:
                conn.pump.cancel()  # not waited for: it holds nothing the connection's end needs
            if conn.token_check is not None:
                conn.token_check.cancel()

    def pump(self, conn: Connection) -> None:
        """Start sending what the relay queued for an open connection: a task while there is
        something to send, gone when it is sent."""
        name = f"pump {conn.recipient}"
        conn.pump = asyncio.get_running_loop().create_task(self._pump(conn), name=name)

    async def _pump(self, conn: Connection) -> None:
        """Send what the relay queued, in order. Failing midway closes the connection, as Redis
        failing it (1013) or anything else (1011): a client that reconnects and resumes misses
        nothing, one left open might. A closing connection is queued nothing more."""
        try:
            await self._send_queued(conn)
        except ConnectionClosed:
            conn.stop_queueing()
        except StorageError as exc:
            conn.stop_queueing()
            log.warning("%s: closing: cannot send what it is owed: %s", conn.recipient, exc)
            await conn.ws.close(CLOSE_TRY_AGAIN_LATER, "try again")
        except Exception:
            conn.stop_queueing()
            log.exception("%s: closing: its pump failed", conn.recipient)
            await conn.ws.close(CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            conn.pump = None

    async def _send_queued(self, conn: Connection) -> None:
        """Until its queue is empty (then dropped: an idle connection holds none)."""
        while conn.queue:
            seq, epoch, message = conn.queue.popleft()
            if seq == CATCH_UP:
                await self._catch_up(conn)
                continue
            async with conn.sending:
                if await self._in_epoch(conn, epoch) and conn.delivered.take_live(seq):
                    await conn.ws.send(message, text=True)
        conn.queue = None

    async def _in_epoch(self, conn: Connection, epoch: int) -> bool:
        """Whether a message of ``epoch`` belongs to the connection's stream, once it is told
        of a newer one (epochs grow: one made by a Redis that lost its data is later). A
        stream the client saw nothing of yet has no epoch: the first it gets is its own."""
        if not epoch or epoch == conn.epoch:
            return True
        if not conn.epoch:
            conn.epoch = epoch
            return True
        if epoch < conn.epoch:
            return False  # queued before the loss, and sent again in the new stream if kept
        await self._resync(conn, epoch)
        return True

    def _check_token_later(self, conn: Connection) -> None:
        """Check the connection's token when it is due: at its expiry, and every
        ``TOKEN_CHECK_S`` before it (a revocation)."""
        left = conn.claims.exp - time.time()
        delay = max(0.0, min(left, TOKEN_CHECK_S))
        loop = asyncio.get_running_loop()
        conn.token_check = loop.call_later(delay, self._token_due, conn)

    def _token_due(self, conn: Connection) -> None:
        in_background(self._check_token(conn))

    async def _check_token(self, conn: Connection) -> None:
        """Close the connection once its token lapses: expired (and not refreshed), or its
        holder's tokens revoked. A revocation Redis cannot tell now is asked again later."""
        if conn.ws.state is State.CLOSED:
            return
        try:
            await self._revocations.still_good(conn.claims, time.time())
        except StorageError as exc:
            log.warning("%s: revocations not read: %s", conn.recipient, exc)
        except AuthError as exc:
            self._counters.rejected[UNAUTHORISED] += 1
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send(error_frame(RejectedInput(UNAUTHORISED, str(exc))), text=True)
                await conn.ws.close(CLOSE_UNAUTHORISED, "token lapsed")
            return
        self._check_token_later(conn)

    async def _refresh(self, conn: Connection, token: str) -> None:
        """A fresh token of the same person, for the same recipient: the connection goes on
        under it."""
        try:
            claims = tokens.verify(token, self._ring, time.time())
            await self._revocations.still_good(claims, time.time())
        except AuthError as exc:
            raise RejectedInput(UNAUTHORISED, str(exc)) from exc
        if not reads_the_same(claims, conn.claims, conn.recipient):
            raise RejectedInput(FORBIDDEN, "a token of someone else, or for another recipient")
        conn.claims = claims
        await self.record_access(claims, conn.recipient, "refreshed")
        await conn.ws.send(auth_ok_frame(claims), text=True)

    async def record_access(
        self, claims: Claims, recipient: str, what: Literal["connected", "refreshed"]
    ) -> None:
        """The audit's record of who reads ``recipient``'s messages, in Kafka before a message
        is sent (raises :class:`StorageError` when Kafka does not take it: no record, no read)."""
        record = access_record(claims, recipient, what, record_id=uuid.uuid4().hex, now=time.time())
        value = record.model_dump_json().encode()
        await self._producer.send_and_wait(keys.ACCESS_LOG, value, key=recipient)

    async def _resume(self, conn: Connection, last_seq: int, epoch: int | None) -> None:
        """A client's resume: what was kept after ``last_seq``; or, when its stream is gone
        (it counts in another epoch than the stream's, or beyond the stream's last seq),
        ``resync`` and what the stream kept. A client that counts in an epoch the gateway does
        not know yet (Redis lost the stream and no message made the new one) keeps its epoch:
        the first message of the new one resyncs it. Epoch 0 or none: the client does not know."""
        position = await self._outbox.position(conn.recipient)
        async with conn.sending:
            conn.epoch = conn.epoch or position.epoch
            if epoch and not conn.epoch:
                conn.epoch = epoch
            elif (epoch and epoch != conn.epoch) or last_seq > position.seq:
                await self._resync(conn, conn.epoch)
            else:
                await self._replay(conn, last_seq)

    async def _catch_up(self, conn: Connection) -> None:
        """After the relay lost Redis: what was published meanwhile, from the stream, or
        ``resync`` when the stream itself was lost (a new epoch)."""
        position = await self._outbox.position(conn.recipient)
        async with conn.sending:
            conn.delivered.settle()
            if position.epoch > conn.epoch > 0:
                await self._resync(conn, position.epoch)
            else:
                conn.epoch = conn.epoch or position.epoch
                await self._replay(conn, conn.delivered.floor)

    async def _resync(self, conn: Connection, epoch: int) -> None:
        """The stream was lost: the client starts again in ``epoch`` (holding the lock)."""
        conn.epoch = epoch
        conn.delivered = Delivered()
        self._counters.resyncs += 1
        position = await self._outbox.position(conn.recipient)
        await conn.ws.send(resync_frame(epoch, position.seq), text=True)
        await self._replay(conn, 0)

    async def _replay(self, conn: Connection, last_seq: int) -> None:
        """Kept messages of the connection's epoch after ``last_seq`` (holding the lock)."""
        kept = await self._outbox.since(conn.recipient, last_seq, conn.epoch or None)
        kept_by_seq = {seq_of(m): m for m in kept}
        for seq in conn.delivered.take_replay(last_seq, kept_by_seq):
            await conn.ws.send(kept_by_seq[seq], text=True)

    async def _listen(self, conn: Connection) -> None:
        try:
            async for raw in conn.ws:
                await self._on_frame(conn, raw)
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == CLOSE_TOO_BIG:
                self._counters.rejected[TOO_LARGE] += 1

    async def _on_frame(self, conn: Connection, raw: str | bytes) -> None:
        try:
            command = self._admitted(conn, raw)
            if isinstance(command, Ping):
                await conn.ws.send(PONG, text=True)
            elif isinstance(command, Auth):
                await self._refresh(conn, command.token)
            elif isinstance(command, Resume):
                await self._resume(conn, command.last_seq, command.epoch)
            elif isinstance(command, Answer):
                await self._answers.forward(conn.claims, command)
                self._counters.answers[command.type] += 1
                await conn.ws.send(ack_frame(command.offer_id), text=True)
            elif isinstance(command, Assign | Resolve | AlarmHand):
                command_id = await self._forward_command(conn.claims, command)
                await conn.ws.send(command_ack_frame(command, command_id), text=True)
            elif isinstance(command, Administer):
                await self._forward_administration(conn.claims, command)
                await conn.ws.send(administration_ack_frame(command), text=True)
            else:
                raise RejectedInput(MALFORMED, f"{command.type} is not a frame clients send")
        except OverBudget as exc:
            await self._over_budget(conn, exc)
        except RejectedInput as exc:
            await self._reject(conn, exc, raw)
        except StorageError as exc:
            log.warning("%s: cannot serve a frame: %s", conn.recipient, exc)
            await self._reject(conn, RejectedInput(UNAVAILABLE, "try again"), raw)

    def _admitted(self, conn: Connection, raw: str | bytes) -> Frame:
        """The frame, parsed, once its kind's budget has room (one that does not parse draws
        on the budget of the rest); :class:`OverBudget` when it has none."""
        budget = conn.budget
        if budget is None:
            budget = conn.budget = FrameBudget(self._limits, time.monotonic())
        try:
            command = parse_frame(raw)
        except RejectedInput:
            budget.charge(None, time.monotonic())
            raise
        budget.charge(command.type, time.monotonic())
        return command

    async def _over_budget(self, conn: Connection, refused: OverBudget) -> None:
        """A frame over its budget is refused, unhandled; a client that goes on is closed."""
        self._counters.rejected[RATE_LIMITED] += 1
        await conn.ws.send(error_frame(refused), text=True)
        if refused.closing:
            self._counters.rate_closed += 1
            log.warning("%s: closing a client that goes on over its budget", conn.recipient)
            await conn.ws.close(CLOSE_POLICY, RATE_LIMITED)

    async def _forward_command(self, claims: Claims, command: Assign | Resolve | AlarmHand) -> str:
        """A dispatcher's command, to the answers topic keyed by its incident or alarm; its id."""
        command_id, now = uuid.uuid4().hex, time.time()
        event: DispatcherCommand | AlarmCommand
        if isinstance(command, AlarmHand):
            event = decide_alarm_hand(claims, command, command_id=command_id, now=now)
        else:
            event = decide_command(claims, command, command_id=command_id, now=now)
        value = orjson.dumps(event.model_dump(mode="json"))
        await self._producer.send_and_wait(keys.OFFER_ANSWERS, value, key=key_of(event))
        return command_id

    async def _forward_administration(self, claims: Claims, entry: Administer) -> None:
        """A caregiver's medication log entry, to the answers topic keyed by its patient (one
        patient's entries in order)."""
        event = decide_administration(claims, entry, now=time.time())
        value = orjson.dumps(event.model_dump(mode="json"))
        await self._producer.send_and_wait(keys.OFFER_ANSWERS, value, key=event.patient_id)

    async def _reject(self, conn: Connection, rejection: RejectedInput, raw: str | bytes) -> None:
        self._counters.rejected[rejection.reason] += 1
        await conn.ws.send(error_frame(rejection), text=True)
        if isinstance(rejection, RejectedAnswer):
            source = f"ws:{conn.claims.role}:{conn.claims.agency}:{conn.claims.sub}"
            try:
                await self._answers.dead_letter(rejection, source, raw)
            except CareKnotError as exc:
                log.warning("dead letter lost: %s", exc)
