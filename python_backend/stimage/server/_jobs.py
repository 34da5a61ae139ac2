"""Requests in flight and the path of their replies back to the I/O thread.

ZeroMQ sockets are not thread-safe: only the I/O thread touches the ROUTER socket. Other
threads hand replies to it through an :class:`Outbox` (one inproc PUSH socket per thread).
A :class:`Job` guarantees that each request ends in exactly one result or error reply, even
when a cancel, a deadline and the device worker race to finish it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage.server._protocol import (
    encode_header,
    error_reply,
    heartbeat_reply,
    json_safe,
    progress_reply,
    result_reply,
)

if TYPE_CHECKING:
    import zmq

    from stimage.models import Predictor, TilePredictions

__all__ = ["Job", "ModelTask", "Outbox", "PredictOutput", "Request"]

logger = logging.getLogger(__name__)


@dataclass
class Request:
    """A parsed request.

    Attributes:
        envelope: Routing frames to reply with (the client's identity, and an empty
            delimiter frame when the client sent one).
        id: The client's request id.
        op: Operation name.
        params: Operation parameters (checked against the schema).
        frames: Binary frames after the header.
    """

    envelope: list[bytes]
    id: str
    op: str
    params: dict[str, Any]
    frames: list[bytes] = field(default_factory=list)

    @property
    def identity(self) -> bytes:
        """The ROUTER identity of the client."""
        return self.envelope[0]


@dataclass
class ModelTask:
    """What a job runs on the device: the model, genes and interval level.

    Jobs with equal :attr:`key` share device batches.
    """

    predictor: Predictor
    model: str
    genes: list[str]
    level: float = 0.9

    @property
    def key(self) -> tuple[str, tuple[str, ...], float]:
        """Batching key: model, genes and level."""
        return (self.model, tuple(self.genes), float(self.level))


@dataclass
class PredictOutput:
    """How a ``predict`` result is built, and what its producer learnt of the tiles.

    Attributes:
        format: ``geojson`` or ``table``.
        object_type: QuPath object type of the tiles.
        classification: QuPath class of the tiles, if any.
        boxes: ``(n, 4)`` full-resolution boxes of the tiles (set by the producer).
        names: Tile names sent by the client (None for slide requests).
        slide: The slide's path, µm per pixel and size (slide requests).
        mpp: µm per pixel of the boxes (the spatial context's distances).
        predicted: Indices of the tiles whose predictions are returned (None: all); the
            others give spatial context only (tiles around a region, ``context_only``).
    """

    format: str = "geojson"
    object_type: str = "tile"
    classification: str | None = None
    boxes: np.ndarray | None = None
    names: list[str | None] | None = None
    slide: dict[str, Any] | None = None
    mpp: float | None = None
    predicted: np.ndarray | None = None


class Outbox:
    """Thread-safe hand-over of replies to the I/O thread that owns the ROUTER socket.

    Args:
        context: The server's ZeroMQ context.
        endpoint: inproc endpoint the I/O thread's PULL socket is bound to.
        direct: The I/O thread's own send function (used when called on that thread).
    """

    def __init__(
        self, context: zmq.Context[Any], endpoint: str, direct: Callable[[list[bytes]], None]
    ) -> None:
        self._context = context
        self._endpoint = endpoint
        self._direct = direct
        self._local = threading.local()
        self._sockets: list[zmq.Socket[Any]] = []
        self._lock = threading.Lock()
        self.io_thread: int | None = None
        self.closed = False

    def send_frames(self, frames: list[bytes]) -> None:
        """Send a whole multipart message: a tag frame, then the envelope and the header.

        The tag is ``b"f:"`` (final reply) or ``b"p:"`` (progress, heartbeat) and the
        request id; the I/O thread drops progress that would follow the final reply it has
        forwarded, so nothing follows a request's final reply even when threads race.
        """
        if self.closed:
            return
        if threading.get_ident() == self.io_thread:
            self._direct(frames)
            return
        import zmq

        sock = getattr(self._local, "sock", None)
        if sock is None:
            with self._lock:
                if self.closed:
                    return
                sock = self._context.socket(zmq.PUSH)
                sock.setsockopt(zmq.LINGER, 0)
                # Never block a worker for long if the I/O thread has gone (server stopping).
                sock.setsockopt(zmq.SNDTIMEO, 2000)
                sock.connect(self._endpoint)
                self._sockets.append(sock)
            self._local.sock = sock
        try:
            sock.send_multipart(frames, copy=len(frames[-1]) < 65536)
        except zmq.ZMQError as e:  # the context is going down
            logger.debug("reply dropped while stopping: %s", e)

    def send(
        self,
        envelope: Sequence[bytes],
        header: dict[str, Any],
        frames: Sequence[bytes] = (),
        *,
        transient: bool = False,
    ) -> None:
        """Send a header (and binary frames) to a client; ``transient`` for progress and heartbeats."""
        try:
            data = encode_header(header)
        except ValueError:
            data = encode_header(json_safe(header))
        tag = (b"p:" if transient else b"f:") + str(header["id"]).encode()
        self.send_frames([tag, *envelope, data, *frames])

    def close(self) -> None:
        """Close every thread's socket (call once the other threads have stopped)."""
        with self._lock:
            self.closed = True
            for s in self._sockets:
                s.close(linger=0)
            self._sockets.clear()


class Job:
    """One admitted request, from admission to its one final reply.

    The batching fields (``chunks`` ... ``parts``) are owned by the
    :class:`~stimage.server._batcher.Batcher` (read and written under its lock).

    Args:
        request: The request.
        outbox: Where replies go.
        deadline_s: Seconds from now after which the request fails with ``deadline``.
        on_close: Called once when the job is closed (result, error or dropped).
    """

    def __init__(
        self,
        request: Request,
        outbox: Outbox,
        deadline_s: float,
        on_close: Callable[[Job], None] | None = None,
    ) -> None:
        self.request = request
        self.outbox = outbox
        self.started = time.monotonic()
        self.deadline = self.started + deadline_s
        self._on_close = on_close
        self._lock = threading.Lock()
        self._closed = False
        self.outcome: str | None = None
        #: What the device runs for this job (predict, explain); None for other ops.
        self.task: ModelTask | None = None
        #: How a predict result is built.
        self.output: PredictOutput = PredictOutput()
        # Batching state.
        self.chunks: deque[tuple[int, np.ndarray]] = deque()
        self.buffered = 0
        self.total: int | None = None
        self.input_done = False
        self.done = 0
        #: (first tile, predictions) per batch; (first tile, features by encoder) for a
        #: model with spatial context, predicted once every tile is encoded.
        self.parts: list[tuple[int, TilePredictions | dict[str, np.ndarray]]] = []

    def __repr__(self) -> str:
        return f"Job({self.request.id!r}, {self.request.op}, outcome={self.outcome})"

    @property
    def id(self) -> str:
        """The request id."""
        return self.request.id

    @property
    def key(self) -> tuple[Any, ...]:
        """Batching key of the job's model task (empty without one)."""
        return () if self.task is None else self.task.key

    @property
    def closed(self) -> bool:
        """Whether the final reply was sent (or the client is gone)."""
        return self._closed

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return time.monotonic() > self.deadline

    def progress(self, stage: str, done: int, total: int) -> None:
        """Send a progress event (nothing once closed)."""
        if not self._closed:
            self.outbox.send(
                self.request.envelope,
                progress_reply(self.id, stage, done, total),
                transient=True,
            )

    def heartbeat(self) -> None:
        """Send a heartbeat (nothing once closed)."""
        if not self._closed:
            self.outbox.send(self.request.envelope, heartbeat_reply(self.id), transient=True)

    def _close(self, outcome: str) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            self.outcome = outcome
        if self._on_close is not None:
            self._on_close(self)
        return True

    def succeed(self, result: dict[str, Any], frames: Sequence[bytes] = ()) -> bool:
        """Send the result (with binary frames); False when the job was already closed."""
        with self._lock:
            if self._closed:
                return False
        header = result_reply(self.id, self.request.op, result)
        if not self._close("result"):
            return False
        self.outbox.send(self.request.envelope, header, frames)
        return True

    def fail(self, code: str, message: str, details: dict[str, Any] | None = None) -> bool:
        """Send an error; False when the job was already closed."""
        if not self._close(code):
            return False
        logger.info("request %s failed: %s: %s", self.id, code, message)
        self.outbox.send(self.request.envelope, error_reply(self.id, code, message, details))
        return True

    def drop(self, reason: str) -> bool:
        """Close without a reply (the client is gone)."""
        if not self._close(reason):
            return False
        logger.info("request %s dropped: %s", self.id, reason)
        return True
