"""The ZeroMQ server: one I/O thread owns the ROUTER socket; workers do the rest.

Threads:

* I/O: receives and checks requests, runs the op handlers (quick), sends every reply
  (handed over by other threads through an inproc PULL socket), checks deadlines and sends
  heartbeats. A reply to a client that has gone (ROUTER_MANDATORY reports it unreachable)
  closes that client's requests, so their work stops at the next batch.
* prepare (``workers`` threads): decode, check and normalise tiles; build results.
* slides (``workers`` threads): read tiles of slide-path requests.
* device: one :class:`~stimage.server._batcher.Batcher` running the models.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage.errors import ConfigError
from stimage.server._batcher import Batcher
from stimage.server._config import ServerConfig
from stimage.server._executor import FairExecutor
from stimage.server._images import StainCache
from stimage.server._jobs import Job, Outbox, Request
from stimage.server._protocol import (
    PROTOCOL_VERSION,
    ErrorCode,
    ProtocolError,
    decode_header,
    encode_header,
    error_reply,
    result_reply,
)
from stimage.server._replies import ReplyRouter
from stimage.server._requests import parse_request
from stimage.server.ops import Handler, Op, default_ops, finish_predict

if TYPE_CHECKING:
    import zmq

    from stimage.models import CellTypeClassifier, ModelBundle, Predictor

__all__ = ["Server"]

logger = logging.getLogger(__name__)

_TICK_S = 0.05


class Server:
    """The stimage backend: models loaded once, requests served over ZeroMQ.

    Args:
        models: Model folders, bundles or loaded predictors; the first is the default.
        config: Where to listen and the limits.

    Raises:
        ConfigError: No model, or two models with the same name.

    Example:
        >>> with Server(["models/her2st"], ServerConfig(port=5557)) as server:  # doctest: +SKIP
        ...     server.wait()
    """

    def __init__(
        self,
        models: Sequence[Predictor | ModelBundle | str | os.PathLike[str]],
        config: ServerConfig | None = None,
    ) -> None:
        from stimage.models import Predictor

        self.config = config or ServerConfig()
        if not models:
            raise ConfigError("the server needs at least one model (--model FOLDER)")
        device = None if self.config.device == "auto" else self.config.device
        self.models: dict[str, Predictor] = {}
        for m in models:
            p = m if isinstance(m, Predictor) else Predictor(m, device=device)
            name = p.bundle.name
            if name in self.models:
                raise ConfigError(
                    f"two models are named {name!r}; serve models with different names "
                    "(the name is in each bundle's manifest.json)"
                )
            self.models[name] = p
        self.default_model = next(iter(self.models))
        first = next(iter(self.models.values()))
        self.device = str(next(iter(first.encoders.values())).device) if first.encoders else "cpu"
        self.ops: dict[str, Op] = default_ops()
        self.stain_cache = StainCache(self.config.stain_cache)
        self.batcher = Batcher(self.config.limits.batch_size, self._on_complete)
        self._jobs: dict[tuple[bytes, str], Job] = {}
        self._jobs_lock = threading.Lock()
        self._running = False
        self._io: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._ctx: zmq.Context[Any] | None = None
        self._auth: Any = None
        self._outbox: Outbox | None = None
        self._prep: FairExecutor | None = None
        self._slides: FairExecutor | None = None
        self._analysis: FairExecutor | None = None
        self._router: Any = None
        self._cells_model: tuple[CellTypeClassifier, str] | None = None
        self._cells_lock = threading.Lock()
        self.address = ""
        #: Counters for tests and benchmarks.
        self.stats: dict[str, float] = {
            "received": 0,
            "errors": 0,
            "dropped": 0,
            "vanished": 0,
            # Longest time the I/O thread spent on one message (seconds): the time every
            # other client waited.
            "max_io_s": 0.0,
        }
        self._replies = ReplyRouter(self.stats, self._vanished)

    # -- registry ------------------------------------------------------------------------
    def register_op(self, name: str, handler: Handler) -> None:
        """Add (or replace) an operation; ``handler(server, request)`` runs on the I/O thread."""
        self.ops[name] = Op(name, handler)

    @property
    def op_names(self) -> list[str]:
        """Names of the registered operations."""
        return list(self.ops)

    # -- cell-type model -------------------------------------------------------------------
    def use_cells_model(self, folder: str | os.PathLike[str] | None = None) -> None:
        """Load the cell-type model of the ``cells`` operation, once, and keep it.

        Call it before :meth:`start` to load at start (``stimage serve --cells-model``);
        otherwise the first ``cells`` request loads the bundled default model.

        Raises:
            InputFileNotFoundError: No model there (or none bundled).
            ConfigError: The model folder is invalid.
        """
        from pathlib import Path

        from stimage.models import default_celltype_model_path, load_celltype_model

        path = Path(folder) if folder is not None else default_celltype_model_path()
        model = load_celltype_model(path)
        with self._cells_lock:
            self._cells_model = (model, str(path))
        logger.info("cell-type model %s loaded from %s", model.training.get("name", "?"), path)

    def cells_model(self) -> CellTypeClassifier:
        """The cell-type model of the ``cells`` operation (the bundled one unless set)."""
        with self._cells_lock:
            known = self._cells_model
        if known is None:
            self.use_cells_model()
            with self._cells_lock:
                known = self._cells_model
        assert known is not None
        return known[0]

    # -- life cycle ----------------------------------------------------------------------
    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, warm_up: bool = True) -> None:
        """Bind, start the threads and return (models warmed up first).

        Raises:
            ConfigError: The address cannot be bound, or the CURVE keys are unusable.
        """
        import zmq

        if self._running:
            return
        if warm_up:
            for p in self.models.values():
                p.predict_tiles(np.full((1, p.tile_px, p.tile_px, 3), 200, np.uint8))
        self._ctx = zmq.Context()
        self._running = True
        self._ready.clear()
        # Workers first: requests may arrive as soon as the socket is bound.
        self.batcher = Batcher(self.config.limits.batch_size, self._on_complete)
        self.batcher.start()
        n = self.config.workers
        self._prep = FairExecutor(n, "stimage-prepare")
        self._slides = FairExecutor(n, "stimage-slide")
        self._analysis = FairExecutor(n, "stimage-analysis")
        endpoint = f"inproc://stimage-replies-{uuid.uuid4().hex}"
        self._outbox = Outbox(self._ctx, endpoint, self._replies.forward)
        self._io = threading.Thread(
            target=self._io_main, args=(endpoint,), name="stimage-io", daemon=True
        )
        self._io.start()
        self._ready.wait()
        if self._start_error is not None:
            err, self._start_error = self._start_error, None
            self._running = False
            self._io.join()
            self._stop_workers()
            self._close_context()
            raise err
        logger.info(
            "stimage server %s listening on %s (protocol %d, models %s, device %s)",
            "with CURVE" if self.config.curve_keys else "",
            self.address,
            PROTOCOL_VERSION,
            list(self.models),
            self.device,
        )

    def stop(self) -> None:
        """Tell clients with work in flight (``unavailable``), stop the threads, unbind."""
        if not self._running:
            return
        self._running = False
        if self._io is not None:
            self._io.join(10)
        if self._outbox is not None:
            self._outbox.closed = True  # replies have nowhere to go now
        self._stop_workers()
        self._close_context()
        logger.info("stimage server on %s stopped", self.address)

    def _stop_workers(self) -> None:
        self.batcher.stop()
        for pool in (self._prep, self._slides, self._analysis):
            if pool is not None:
                pool.shutdown()
        self._prep = self._slides = self._analysis = None

    def _close_context(self) -> None:
        if self._outbox is not None:
            self._outbox.close()
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def wait(self, timeout: float | None = None) -> None:
        """Block until the server stops (or ``timeout`` seconds)."""
        if self._io is not None:
            self._io.join(timeout)

    @property
    def running(self) -> bool:
        """Whether the I/O thread is serving."""
        return self._running and self._io is not None and self._io.is_alive()

    # -- jobs ----------------------------------------------------------------------------
    def admit(self, req: Request, deadline_s: float) -> Job:
        """Register a request as a job, or refuse it (``busy``, duplicate id).

        Raises:
            ProtocolError: ``busy`` when ``max_requests`` are in flight, or the client has
                ``max_client_requests`` in flight (so one client cannot fill the server);
                ``bad_request`` when the client already has a request with this id in flight.
        """
        assert self._outbox is not None
        key = (req.identity, req.id)
        lim = self.config.limits
        with self._jobs_lock:
            if key in self._jobs:
                raise ProtocolError(
                    ErrorCode.BAD_REQUEST,
                    f"request id {req.id!r} is already in flight from this client; use a new id per request",
                )
            if len(self._jobs) >= lim.max_requests:
                raise ProtocolError(
                    ErrorCode.BUSY,
                    f"the server is working on {len(self._jobs)} requests, its limit; retry shortly",
                    {"retry_after_ms": 500},
                )
            mine = sum(ident == req.identity for ident, _ in self._jobs)
            if mine >= lim.max_client_requests:
                raise ProtocolError(
                    ErrorCode.BUSY,
                    f"this client has {mine} requests in flight, the most one client may have; "
                    "wait for one to finish",
                    {"retry_after_ms": 500},
                )
            job = Job(req, self._outbox, deadline_s, on_close=self._release)
            self._jobs[key] = job
        # An id may be reused once its request is over: its progress must flow again.
        self._replies.reopen(req.identity, req.id)
        return job

    def _release(self, job: Job) -> None:
        with self._jobs_lock:
            key = (job.request.identity, job.id)
            if self._jobs.get(key) is job:
                del self._jobs[key]

    def find_job(self, identity: bytes, request_id: str) -> Job | None:
        """The open job of a client's request, if any."""
        with self._jobs_lock:
            return self._jobs.get((identity, request_id))

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet finished."""
        with self._jobs_lock:
            return len(self._jobs)

    def submit(self, job: Job, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` for a job on the prepare threads (clients served in turn)."""
        assert self._prep is not None
        self._prep.submit(job.request.identity, fn, *args)

    def submit_slide(self, job: Job, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` for a job on the slide-reading threads (clients served in turn)."""
        assert self._slides is not None
        self._slides.submit(job.request.identity, fn, *args)

    def submit_analysis(self, job: Job, fn: Callable[..., Any], *args: Any) -> None:
        """Run long work of a job (segmentation, explanations) on threads of its own."""
        assert self._analysis is not None
        self._analysis.submit(job.request.identity, fn, *args)

    def _on_complete(self, job: Job) -> None:
        if self._prep is not None and self._running:
            self._prep.submit(job.request.identity, finish_predict, job)

    def reply_result(self, req: Request, result: dict[str, Any]) -> None:
        """Send the result of a request answered on the spot (hello, ping, cancel)."""
        self._send_direct([*req.envelope, encode_header(result_reply(req.id, req.op, result))])

    # -- I/O thread ----------------------------------------------------------------------
    def _bind(self, endpoint: str) -> tuple[Any, Any]:
        from stimage.server._sockets import bind_router

        assert self._ctx is not None
        router, pull, self._auth, self.address = bind_router(self._ctx, self.config, endpoint)
        return router, pull

    def _io_main(self, endpoint: str) -> None:
        import zmq

        try:
            router, pull = self._bind(endpoint)
        except BaseException as e:  # noqa: BLE001 - handed to start(), which raises it
            self._start_error = e
            self._ready.set()
            return
        self._router = router
        self._replies.router = router
        assert self._outbox is not None
        self._outbox.io_thread = threading.get_ident()
        self._ready.set()
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(pull, zmq.POLLIN)
        next_beat = time.monotonic() + self.config.limits.heartbeat_s
        try:
            while self._running:
                events = dict(poller.poll(int(_TICK_S * 1000)))
                for _ in range(256):
                    if pull not in events:
                        break
                    try:
                        frames = pull.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._guarded(self._replies.forward, frames)
                for _ in range(64):
                    if router not in events:
                        break
                    try:
                        frames = router.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._guarded(self._handle, frames)
                now = time.monotonic()
                self._check_deadlines()
                self._replies.tick(now)
                if now >= next_beat:
                    next_beat = now + self.config.limits.heartbeat_s
                    for job in self._open_jobs():
                        job.heartbeat()
        except Exception:
            logger.exception("the server's I/O loop failed; stopping")
            self._running = False
        finally:
            for job in self._open_jobs():
                job.fail(ErrorCode.UNAVAILABLE, "the server is stopping; retry when it is back")
            self.batcher.wake()
            router.close(linger=200)
            pull.close(linger=0)
            self._router = None
            self._replies.router = None

    def _guarded(self, fn: Callable[[list[bytes]], None], frames: list[bytes]) -> None:
        """Run a per-message step; a bug in it loses that message, never the I/O loop."""
        t0 = time.perf_counter()
        try:
            fn(frames)
        except Exception:
            self.stats["errors"] += 1
            logger.exception("a message could not be processed; the server goes on")
        took = time.perf_counter() - t0
        if took > self.stats["max_io_s"]:
            self.stats["max_io_s"] = took
            if took > 0.5:
                logger.warning("the I/O thread spent %.2f s on one message", took)

    def _open_jobs(self) -> list[Job]:
        with self._jobs_lock:
            return list(self._jobs.values())

    def _check_deadlines(self) -> None:
        expired = [j for j in self._open_jobs() if j.expired]
        for job in expired:
            job.fail(
                ErrorCode.DEADLINE,
                f"the request did not finish within its deadline ({job.deadline - job.started:.1f} s)",
            )
        if expired:
            self.batcher.wake()

    def _send_direct(self, frames: list[bytes]) -> None:
        """Send on the ROUTER (I/O thread only); an unreachable client closes its jobs."""
        self._replies.send(frames)

    def _vanished(self, identity: bytes) -> None:
        with self._jobs_lock:
            gone = [j for (ident, _), j in self._jobs.items() if ident == identity]
        if gone:
            self.stats["vanished"] += 1
            logger.info("client %s is gone; dropping its %d request(s)", identity.hex(), len(gone))
        for job in gone:
            job.drop("client gone")
        self.batcher.wake()

    def _handle(self, frames: list[bytes]) -> None:
        """Check one incoming message and run its op; every failure is an error reply."""
        self.stats["received"] += 1
        envelope = [frames[0]]
        rest = frames[1:]
        if rest and rest[0] == b"" and len(rest) > 1:
            envelope.append(b"")
            rest = rest[1:]
        request_id: str | None = None
        try:
            header = decode_header(rest[0] if rest else b"", self.config.limits.max_header_bytes)
            rid = header.get("id")
            if isinstance(rid, str) and 0 < len(rid) <= 128:
                request_id = rid
            req = parse_request(envelope, header, rest[1:], self.config.limits, self.ops)
            self.ops[req.op].handler(self, req)
        except ProtocolError as e:
            self.stats["errors"] += 1
            self._send_direct(
                [*envelope, encode_header(error_reply(request_id, e.code, e.message, e.details))]
            )
        except Exception as e:
            self.stats["errors"] += 1
            logger.exception("unexpected failure handling a request")
            self._send_direct(
                [
                    *envelope,
                    encode_header(
                        error_reply(
                            request_id,
                            ErrorCode.INTERNAL,
                            f"{type(e).__name__}: {e} (see the server log)",
                        )
                    ),
                ]
            )
