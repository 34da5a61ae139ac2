"""The device worker: one thread that runs the models on batches combined across requests.

Producers (decoding tiles, reading slides) push normalised tiles into their job; the worker
takes tiles from every job with work ready, round-robin so that no request starves, fills a
batch of up to ``batch_size`` tiles from jobs that share a model, gene list and interval
level, runs it, and hands each job its slice of the predictions. Closed jobs (cancelled,
past their deadline, client gone) are dropped at the next batch boundary, so a cancel takes
effect within one batch. Producers that run ahead are held back (a bounded buffer per job).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from stimage.server._protocol import ErrorCode

if TYPE_CHECKING:
    from stimage.models import TilePredictions
    from stimage.server._jobs import Job

__all__ = ["Batcher", "take_rows"]

logger = logging.getLogger(__name__)


def take_rows(pred: TilePredictions, start: int, stop: int) -> TilePredictions:
    """Rows ``start:stop`` of predictions."""
    return pred.rows(slice(start, stop))


class Batcher:
    """Combines the tiles of active jobs into device batches on one worker thread.

    Args:
        batch_size: Tiles per forward pass.
        on_complete: Called (on the worker thread) with a job whose tiles are all predicted.
        max_buffered: Tiles a job may hold waiting for the device before its producer waits.
    """

    def __init__(
        self,
        batch_size: int,
        on_complete: Callable[[Job], None],
        max_buffered: int | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.max_buffered = max_buffered or 4 * batch_size
        self._on_complete = on_complete
        self._cond = threading.Condition()
        self._jobs: list[Job] = []
        self._running = False
        self._thread: threading.Thread | None = None
        #: Forward passes run and tiles predicted (for tests and benchmarks).
        self.batches = 0
        self.tiles = 0

    # -- producers ---------------------------------------------------------------------
    def add(self, job: Job) -> None:
        """Make a job known to the worker (before its producer pushes tiles)."""
        with self._cond:
            self._jobs.append(job)
            self._cond.notify_all()

    def push(self, job: Job, start: int, tiles: np.ndarray, *, block: bool = True) -> bool:
        """Queue normalised tiles ``start ... start + len(tiles) - 1`` of a job.

        With ``block``, waits while the job already holds ``max_buffered`` tiles
        (backpressure on slide readers). Returns False when the job was closed meanwhile
        (stop producing).
        """
        with self._cond:
            while (
                block
                and self._running
                and not job.closed
                and job.buffered > 0
                and job.buffered + len(tiles) > self.max_buffered
            ):
                self._cond.wait(0.5)
            if job.closed or not self._running:
                return False
            job.chunks.append((start, tiles))
            job.buffered += len(tiles)
            self._cond.notify_all()
            return True

    def has_room(self, job: Job, n: int) -> bool:
        """Whether ``n`` more tiles of a job fit its buffer now (always true when it is empty)."""
        with self._cond:
            return job.buffered == 0 or job.buffered + n <= self.max_buffered

    def finish_input(self, job: Job, total: int) -> None:
        """Say that all ``total`` tiles of a job were pushed."""
        with self._cond:
            job.total = total
            job.input_done = True
            complete = job.done >= total and not job.closed
            if complete:
                self._remove(job)
            self._cond.notify_all()
        if complete:
            self._on_complete(job)

    def wake(self) -> None:
        """Wake the worker and waiting producers (a job was closed)."""
        with self._cond:
            self._cond.notify_all()

    @property
    def active(self) -> int:
        """Jobs known to the worker."""
        with self._cond:
            return len(self._jobs)

    # -- worker ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread."""
        self._running = True
        self._thread = threading.Thread(target=self._run, name="stimage-device", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker after its current batch."""
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _remove(self, job: Job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)

    def _take(self) -> list[tuple[Job, int, np.ndarray]] | None:
        """The next batch (under the lock): pieces ``(job, start, tiles)`` of one key."""
        with self._cond:
            while True:
                if not self._running:
                    return None
                for j in [j for j in self._jobs if j.closed]:
                    self._remove(j)
                ready = [j for j in self._jobs if j.buffered > 0]
                if ready:
                    break
                self._cond.wait(0.5)
            first = ready[0]
            same = [j for j in ready if j.key == first.key]
            # Round-robin: the job served first goes to the back of the line.
            self._jobs.remove(first)
            self._jobs.append(first)
            room = self.batch_size
            share = max(1, room // len(same))
            pieces: list[tuple[Job, int, np.ndarray]] = []
            for limit in (share, room):
                for j in same:
                    want = min(limit, room)
                    while want > 0 and j.chunks:
                        start, arr = j.chunks[0]
                        k = min(want, len(arr))
                        pieces.append((j, start, arr[:k]))
                        if k == len(arr):
                            j.chunks.popleft()
                        else:
                            j.chunks[0] = (start + k, arr[k:])
                        j.buffered -= k
                        want -= k
                        room -= k
                    if room == 0:
                        break
                if room == 0:
                    break
            self._cond.notify_all()
            return pieces

    def _run(self) -> None:
        while True:
            try:
                pieces = self._take()
            except Exception:  # a bug here must not stop the device thread
                logger.exception("the device worker could not form a batch")
                time.sleep(0.1)
                continue
            if pieces is None:
                return
            try:
                self._run_batch(pieces)
            except Exception as e:  # the batch's requests fail, the server goes on
                logger.exception("a batch of %d tiles failed", sum(len(a) for _, _, a in pieces))
                for j in dict.fromkeys(j for j, _, _ in pieces):
                    j.fail(
                        ErrorCode.INTERNAL,
                        f"the model failed on a batch: {type(e).__name__}: {e} (see the server log)",
                    )

    def _run_batch(self, pieces: list[tuple[Job, int, np.ndarray]]) -> None:
        jobs = list(dict.fromkeys(j for j, _, _ in pieces))
        task = jobs[0].task
        if task is None:
            raise RuntimeError(f"job {jobs[0].id} reached the device without a model")
        tiles = np.concatenate([a for _, _, a in pieces])
        if task.predictor.context is None:
            pred = task.predictor.predict_tiles(tiles, task.genes, task.level)

            def rows(a: int, b: int) -> Any:
                return take_rows(pred, a, b)
        else:  # predicted when the job's every tile is encoded: tiles give each other context
            feats = task.predictor.features(tiles)

            def rows(a: int, b: int) -> Any:
                return {k: v[a:b] for k, v in feats.items()}

        self.batches += 1
        self.tiles += len(tiles)
        done_jobs = []
        row = 0
        with self._cond:
            for j, start, arr in pieces:
                n = len(arr)
                if not j.closed:
                    j.parts.append((start, rows(row, row + n)))
                    j.done += n
                row += n
            for j in jobs:
                if j.closed:
                    self._remove(j)
                elif j.input_done and j.total is not None and j.done >= j.total:
                    self._remove(j)
                    done_jobs.append(j)
        for j in jobs:
            if not j.closed:
                j.progress("predict", j.done, j.total if j.total is not None else j.done)
        for j in done_jobs:
            self._on_complete(j)
