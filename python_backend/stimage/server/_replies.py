"""Replies on their way out: sent by the I/O thread, retried for slow clients.

Other threads hand replies to the I/O thread through the outbox with a tag frame (``f:``
final, ``p:`` progress or heartbeat, then the request id); :class:`ReplyRouter` sends them
on the ROUTER socket. A final reply that a slow client cannot take now is retried for a
while; progress that would follow its request's final reply is dropped, so nothing follows
a final reply; a client that has gone (ROUTER_MANDATORY reports it unreachable) closes its
requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ReplyRouter"]

logger = logging.getLogger(__name__)

#: Final replies a slow client cannot take right now are retried for this long.
RETRY_S = 5.0
#: Final replies are remembered this long, to drop progress events that lag behind them.
FINAL_MEMORY_S = 10.0


class ReplyRouter:
    """Sends replies on the ROUTER socket (I/O thread only).

    Args:
        stats: The server's counters (``dropped`` is counted here).
        on_gone: Called with a client identity that is unreachable.
    """

    def __init__(self, stats: dict[str, float], on_gone: Callable[[bytes], None]) -> None:
        self.router: Any = None
        self._stats = stats
        self._on_gone = on_gone
        self._retry: list[tuple[float, list[bytes]]] = []
        self._finalized: dict[tuple[bytes, bytes], float] = {}

    def send(self, frames: list[bytes]) -> None:
        """Send a message (envelope first); queued for a retry when the client is slow."""
        import zmq

        if self.router is None:
            return
        try:
            self.router.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            self._retry.append((time.monotonic() + RETRY_S, frames))
        except zmq.ZMQError as e:
            if e.errno == zmq.EHOSTUNREACH:
                self._on_gone(frames[0])
            else:
                logger.warning("a reply could not be sent: %s", e)

    def forward(self, frames: list[bytes]) -> None:
        """Send a tagged reply from the outbox (see :meth:`Outbox.send_frames`)."""
        import zmq

        tag, rest = frames[0], frames[1:]
        key = (rest[0], tag[2:])
        if tag.startswith(b"f:"):
            self._finalized[key] = time.monotonic() + FINAL_MEMORY_S
            self.send(rest)
            return
        if key in self._finalized or self.router is None:
            return  # progress overtaken by its request's final reply
        try:
            self.router.send_multipart(rest, zmq.NOBLOCK)
        except zmq.Again:
            pass  # progress and heartbeats are dropped for a client that is not reading
        except zmq.ZMQError as e:
            if e.errno == zmq.EHOSTUNREACH:
                self._on_gone(rest[0])

    def reopen(self, identity: bytes, request_id: str) -> None:
        """Forget a finished request of this id: a new request may reuse it."""
        self._finalized.pop((identity, request_id.encode()), None)

    def tick(self, now: float) -> None:
        """Retry slow clients' final replies; forget old finals."""
        if self._retry:
            self._flush_retries(now)
        while self._finalized:
            key, until = next(iter(self._finalized.items()))
            if until > now:
                break
            del self._finalized[key]

    def _flush_retries(self, now: float) -> None:
        import zmq

        pending, self._retry = self._retry, []
        for until, frames in pending:
            try:
                self.router.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                if now < until:
                    self._retry.append((until, frames))
                else:
                    self._stats["dropped"] += 1
                    logger.warning(
                        "a client took no replies for %.0f s; a reply was dropped", RETRY_S
                    )
            except zmq.ZMQError:
                self._on_gone(frames[0])
