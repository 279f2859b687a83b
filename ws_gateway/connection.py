"""One client's open WebSocket as the gateway holds it: who it is, what it was sent, what the
relay has queued for it, and the codes a connection is closed with.

Ten thousand idle clients are ten thousand :class:`Connection` objects, so one holds only what
it needs while idle: its queue is made by the first message the relay hands it and its pump
(the task that sends what is queued, :meth:`ws_gateway.conversation.Conversations.pump`) lives
only while something waits to be sent; both are gone once it is sent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection

from kernel.tokens import Claims
from ws_gateway.limits import FrameBudget
from ws_gateway.session import Delivered

if TYPE_CHECKING:
    from ws_gateway.conversation import Conversations

CLOSE_POLICY = 1008
"""Went on sending over its budget."""
CLOSE_TOO_BIG = 1009
"""A frame over the size a frame may have."""
CLOSE_INTERNAL_ERROR = 1011
"""The gateway failed sending what it is owed (websockets' keepalive closes so too)."""
CLOSE_TRY_AGAIN_LATER = 1013
"""Too slow for what it is sent, or the gateway cannot reach Redis now: reconnect and resume."""
CLOSE_UNAUTHORISED = 4401
CLOSE_FORBIDDEN = 4403

QUEUE_SIZE = 1024
"""Relayed messages a connection may have waiting: one more closes it (1013)."""
CATCH_UP = -1
"""The seq of the relay's word, in a connection's queue, that it lost messages."""

Queued = tuple[int, int, bytes]
"""A relayed message: its seq, its epoch, itself."""


class Connection:
    """One client's live state: its recipient, the epoch of its stream and what it got of it,
    what the relay queued for it and its pump has yet to send, and whether it is closing."""

    __slots__ = (
        "budget",
        "claims",
        "closing",
        "delivered",
        "epoch",
        "open",
        "pump",
        "queue",
        "recipient",
        "sending",
        "talk",
        "token_check",
        "ws",
    )

    def __init__(
        self, ws: ServerConnection, claims: Claims, recipient: str, talk: Conversations
    ) -> None:
        self.ws, self.claims, self.recipient, self.talk = ws, claims, recipient, talk
        self.queue: deque[Queued] | None = None
        self.pump: asyncio.Task[None] | None = None
        self.open = False
        """Whether its live messages are sent as they come: not before its ``hello`` and replay."""
        self.closing = False
        """Being closed (too slow, or its pump failed, or its conversation ended): nothing more
        is queued for it."""
        self.epoch = 0
        self.delivered = Delivered()
        self.sending = asyncio.Lock()
        self.budget: FrameBudget | None = None
        """Made by its first frame (a client that only listens sends none)."""
        self.token_check: asyncio.TimerHandle | None = None
        """When its token is next checked: a timer, not a task waiting a connection's life."""

    def catch_up(self) -> bool:
        """Queue the relay's word that it lost messages: the pump catches up at this point of
        the queue, after what came before the loss and before what came after."""
        return self.offer(CATCH_UP, 0, b"")

    def offer(self, seq: int, epoch: int, message: bytes) -> bool:
        """Queue a relayed message; False (once) when :data:`QUEUE_SIZE` are already waiting,
        and the client, too slow for what it is sent, is closed (1013)."""
        if self.closing:
            return True
        if self.queue is None:
            self.queue = deque()
        elif len(self.queue) >= QUEUE_SIZE:
            self.close_later(CLOSE_TRY_AGAIN_LATER, "too slow")
            return False
        self.queue.append((seq, epoch, message))
        if self.open and self.pump is None:
            self.talk.pump(self)
        return True

    def stop_queueing(self) -> None:
        """Nothing more is queued or sent: what waits is dropped (a client that reconnects and
        resumes is sent it from its stream)."""
        self.closing, self.open, self.queue = True, False, None

    def close_later(self, code: int, reason: str) -> None:
        """Close it from a callback (the relay's), which cannot wait for the close."""
        self.stop_queueing()
        in_background(self.ws.close(code, reason))


_BACKGROUND: set[asyncio.Task[None]] = set()
"""Steps started from a callback (a connection closed, a token checked), kept until done."""


def in_background(step: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(step)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
